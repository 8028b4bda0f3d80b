"""The Faust application: topics, tables and agents wired from settings and the registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust

from agents.envelope import Origin
from agents.readiness import ReadinessProcessor
from streams.clock import Clock, SystemClock
from streams.codecs import register_orjson_codec
from streams.registry import Registry, load_registry
from streams.settings import Settings
from streams.topics import CATALOG, TopicName

log = logging.getLogger(__name__)


class FaustPublisher:
    """Publishes through the app's producer, so sends are flushed before offsets commit."""

    def __init__(self, topics: dict[TopicName, Any]) -> None:
        self._topics = topics

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        await self._topics[topic].send(key=key.encode("utf-8"), value=value)


@dataclass(frozen=True)
class PhaseflowApp:
    """The Faust app together with what its agents were built from (for tests and the CLI)."""

    app: Any  # faust.App: untyped upstream
    settings: Settings
    registry: Registry
    readiness: ReadinessProcessor


def build_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    clock: Clock | None = None,
) -> PhaseflowApp:
    """A fresh Faust app for ``settings``; nothing is started."""
    register_orjson_codec()
    registry = registry if registry is not None else load_registry(settings.registry_path)
    clock = clock if clock is not None else SystemClock()
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Recovery already replays the changelog; waiting a further 3 s (the default) before
        # processing only adds latency to every start and rebalance.
        stream_recovery_delay=0.0,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_seconds,
    )
    topics = {
        entry.name: app.topic(
            settings.topic(entry.name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )
        for entry in CATALOG
    }
    readiness_table = app.Table(
        "readiness",
        default=None,
        partitions=settings.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="orjson"),
        help="Per (game_date, phase) readiness: processors seen, dedup ids, trigger ledger.",
    )
    readiness = ReadinessProcessor(
        registry=registry,
        table=readiness_table,
        publisher=FaustPublisher(topics),
        clock=clock,
        pipeline_timezone=settings.pipeline_timezone,
        max_message_bytes=settings.max_message_bytes,
    )

    @app.agent(topics[TopicName.PHASE_COMPLETIONS], name="readiness")
    async def readiness_agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            origin = Origin(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
            )
            await readiness.handle(message.value, origin)

    return PhaseflowApp(app=app, settings=settings, registry=registry, readiness=readiness)
