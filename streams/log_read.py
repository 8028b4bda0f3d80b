"""Reading catalog topics back from the log: from the beginning to their end as of now, with no
consumer group (nothing committed, no worker's group touched) and only committed records."""

from __future__ import annotations

import time

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, committed_reader, until_assigned


async def read_to_end(
    settings: Settings, *topics: TopicName, give_up_after: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topics`` up to the end offsets taken when it starts, in
    order per partition; records appended while it reads may be included, never required."""
    names = {settings.topic(topic) for topic in topics}
    consumer = await kafka_clients.started(committed_reader(settings, *topics))
    try:
        deadline = time.monotonic() + give_up_after
        await until_assigned(consumer, names, deadline)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while time.monotonic() < deadline:
            # ListOffsets may under-report on Tansu; the fetch's high watermark does not.
            pending = [
                tp
                for tp in tps
                if await consumer.position(tp) < max(ends[tp], consumer.highwater(tp) or 0)
            ]
            if not pending:
                break
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        else:
            names_text = ", ".join(sorted(names))
            raise TimeoutError(
                f"could not read {names_text} to its end within {give_up_after:.0f} s"
            )
        return records
    finally:
        await consumer.stop()


async def missing_topics(settings: Settings, *topics: TopicName) -> list[str]:
    """The full names of ``topics`` the cluster does not have (asked, never created: a reader
    must leave the cluster as it found it)."""
    admin = await kafka_clients.started(kafka_clients.admin(settings))
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [settings.topic(topic) for topic in topics if settings.topic(topic) not in existing]
