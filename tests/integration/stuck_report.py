"""What the broker holds for dates a failover test found stuck: for its failure message.

The readiness table's changelog (per key: its number of writes and the newest one's offset,
processors and trigger), read once
read_committed (what a worker restores) and once read_uncommitted (what was written, committed
or not), and the worker group's committed offset against the end of every completions
partition. Comparing the two tells lost state writes from unread completions.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from aiokafka import TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName


def _summary(value: bytes | None) -> str:
    if value is None:
        return "deleted"
    state = json.loads(value)
    trigger = state.get("trigger")
    return (
        f"phase {state.get('phase')} processors={sorted(state.get('processors', {}))} "
        f"seen={len(state.get('seen_ids', ()))} trigger={'yes' if trigger else 'no'}"
    )


async def _changelog(settings: Settings, days: set[date], isolation: str) -> list[str]:
    topic = f"{settings.app_id}-readiness-changelog"
    reader = kafka_clients.consumer(settings, isolation_level=isolation, enable_auto_commit=False)
    await reader.start()
    newest: dict[str, tuple[int, int, str]] = {}  # key -> (partition, offset, summary)
    writes: dict[str, int] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        for tp in tps:
            while await reader.position(tp) < ends[tp]:
                batch = await reader.getmany(tp, timeout_ms=2000)
                if not batch:
                    break
                for record in batch.get(tp, []):
                    key = (record.key or b"").decode(errors="replace")
                    if any(day.isoformat() in key for day in days):
                        writes[key] = writes.get(key, 0) + 1
                        newest[key] = (tp.partition, record.offset, _summary(record.value))
    finally:
        await reader.stop()
    return [
        f"  {key} ({writes[key]} writes, newest [{partition}]@{offset}): {summary}"
        for key, (partition, offset, summary) in sorted(newest.items())
    ]


async def _commits(settings: Settings) -> list[str]:
    topic = settings.topic(TopicName.PHASE_COMPLETIONS)
    probe = kafka_clients.consumer(settings, group_id=settings.app_id, enable_auto_commit=False)
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        ends = await probe.end_offsets(tps)
        return [
            f"  [{tp.partition}] committed {await probe.committed(tp)} of {ends[tp]}" for tp in tps
        ]
    finally:
        await probe.stop()


async def stuck_report(settings: Settings, stuck: set[tuple[date, int]]) -> str:
    days = {day for day, _ in stuck}
    parts: list[Any] = ["completions partitions (worker group):", *await _commits(settings)]
    for isolation in ("read_committed", "read_uncommitted"):
        parts += [f"readiness changelog of {sorted(days)} ({isolation}):"]
        parts += await _changelog(settings, days, isolation)
    return "\n".join(str(part) for part in parts)
