"""Every table's changelog topic exists, in the broker's metadata, before the worker joins.

faust-streaming 0.15 creates a table's changelog topic when the table starts, a moment before the
consumer joins its group, and the group leader computes the assignment from the cluster metadata
it has then. A changelog the metadata does not show yet is left out ("Ignoring missing topic"):
its partitions are assigned to nobody (the table is not recovered) and the topic is missing from
the topic groups the assignment carries. Under static membership that assignment is what a
restarted worker gets back from the broker, and its first table write to that changelog raised
``KeyError`` in ``PartitionAssignor.group_for_topic`` (the worker crashed; docs/failure-modes.md).
Created here, before Faust starts, with the configuration Faust would give them, the changelogs
are in every assignment from the first one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

#: How often the broker's metadata is asked whether the created topics are in it yet.
_METADATA_POLL_SECONDS = 0.1


class ChangelogTopicsError(RuntimeError):
    """The changelog topics could not be created or did not appear in the broker's metadata."""


def changelog_topics(app: Any) -> list[NewTopic]:
    """The changelog topic of each of ``app``'s tables, configured as Faust would declare it."""
    conf = app.conf
    wanted: list[NewTopic] = []
    for table in app.tables.values():
        topic = table.changelog_topic
        retention = topic.retention
        config = app.transport._topic_config(
            retention=int(retention * 1000) if retention else None,
            compacting=topic.compacting,
            deleting=topic.deleting,
        )
        config.update(topic.config or {})
        wanted += [
            NewTopic(
                name=name,
                num_partitions=topic.partitions or conf.topic_partitions,
                replication_factor=topic.replicas or conf.topic_replication_factor,
                topic_configs={key: str(value) for key, value in config.items()},
            )
            for name in topic.topics
        ]
    return wanted


async def ensure_changelog_topics(
    settings: Settings, app: Any, *, timeout_seconds: float = 30.0
) -> list[str]:
    """Create ``app``'s missing changelog topics and wait until the broker's metadata lists
    every one of them; return the names created."""
    wanted = changelog_topics(app)
    admin = await kafka_clients.started(
        kafka_clients.admin(settings, request_timeout_ms=int(timeout_seconds * 1000))
    )
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for new_topic in wanted:
            if new_topic.name in existing:
                continue
            # One request per topic: another worker creating it too must not abort the rest.
            try:
                await admin.create_topics([new_topic], timeout_ms=int(timeout_seconds * 1000))
            except TopicAlreadyExistsError:
                continue
            created.append(new_topic.name)
        if created:
            log.info("created changelog topics: %s", ", ".join(created))
            await _until_in_metadata(admin, {t.name for t in wanted}, timeout_seconds)
        return created
    finally:
        await admin.close()


async def _until_in_metadata(
    admin: AIOKafkaAdminClient, names: set[str], timeout_seconds: float
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        missing = names - set(await admin.list_topics())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ChangelogTopicsError(
                f"changelog topics created but not in the broker's metadata after "
                f"{timeout_seconds:.0f} s: {', '.join(sorted(missing))}"
            )
        await asyncio.sleep(_METADATA_POLL_SECONDS)
