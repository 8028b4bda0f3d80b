"""The Faust application: topics, tables and agents wired from settings and the registry.

Each feature installs itself from its own module (``install(ctx)``), so the app factory stays a
list of features and features do not know about each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust

from agents import readiness_agent
from streams.clock import Clock, SystemClock
from streams.codecs import register_orjson_codec
from streams.registry import Registry, load_registry
from streams.settings import Settings
from streams.topics import CATALOG, TopicName
from streams.web import install as web_install

log = logging.getLogger(__name__)


class FaustPublisher:
    """Publishes through the app's producer, so sends are flushed before offsets commit."""

    def __init__(self, topics: dict[TopicName, Any]) -> None:
        self._topics = topics

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        await self._topics[topic].send(key=key.encode("utf-8"), value=value)


@dataclass
class AppContext:
    """What features are built from, and what they expose to each other and to tests."""

    app: Any  # faust.App: untyped upstream
    settings: Settings
    registry: Registry
    clock: Clock
    topics: dict[TopicName, Any]
    publisher: FaustPublisher
    components: dict[str, Any] = field(default_factory=dict)


def _faust_app(settings: Settings) -> Any:
    return faust.App(
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
        web_bind=settings.web_host,  # web_host alone only names the URL; this is the bind
        # Faust's /table and /router pages would serve table data and topology without an API
        # key; phaseflow's own endpoints (streams/web) are the HTTP surface.
        web_tables_enabled=False,
        web_router_enabled=False,
        # Recovery already replays the changelog; waiting a further 3 s (the default) before
        # processing only adds latency to every start and rebalance.
        stream_recovery_delay=0.0,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_seconds,
    )


def build_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    clock: Clock | None = None,
) -> AppContext:
    """A fresh Faust app for ``settings`` with every feature installed; nothing is started."""
    register_orjson_codec()
    app = _faust_app(settings)
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
    ctx = AppContext(
        app=app,
        settings=settings,
        registry=registry if registry is not None else load_registry(settings.registry_path),
        clock=clock if clock is not None else SystemClock(),
        topics=topics,
        publisher=FaustPublisher(topics),
    )
    for feature in (readiness_agent, web_install):
        feature.install(ctx)
    return ctx
