"""The Faust application: topics, tables and agents wired from settings and the registry.

Each feature installs itself from its own module (``install(ctx)``) and returns what it built;
the app factory keeps those, typed, in :class:`~phaseflow.streams.components.Components`, so
features do not know about each other. The series computed from a feature's state are
registered here, the roof, so agents never import the web or monitoring layers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from phaseflow.agents import predictions, readiness_agent
from phaseflow.sinks import install as prediction_sink
from phaseflow.streams.aiokafka_concurrent_txn import retry_concurrent_offsets_quickly
from phaseflow.streams.aiokafka_txn_coordinator import retry_coordinator_lookups
from phaseflow.streams.components import Components
from phaseflow.streams.core.clock import Clock, clock_for
from phaseflow.streams.core.codecs import register_orjson_codec
from phaseflow.streams.core.faust_table_writes import commit_after_table_writes
from phaseflow.streams.core.features import FeatureContext
from phaseflow.streams.core.kafka_clients import faust_broker_credentials
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import CATALOG, TopicName
from phaseflow.streams.delivery import Delivery
from phaseflow.streams.faust_concurrent_commits import commit_partitions_concurrently
from phaseflow.streams.faust_fetch_gap import FETCH_GAP_CHECK_SECONDS, FetchGapRepair
from phaseflow.streams.faust_fetch_hold import fetch_only_what_is_taken
from phaseflow.streams.faust_fetch_partitions import fetch_only_active_partitions
from phaseflow.streams.faust_fetch_wait import use_fetch_wait
from phaseflow.streams.faust_gap_report import report_skipped_offsets
from phaseflow.streams.faust_rebalance_producers import stop_producers_of_lost_partitions
from phaseflow.streams.faust_recovery import (
    use_broker_highwaters_for_recovery,
    use_quick_aborted_tx_detection,
)
from phaseflow.streams.faust_stream_seek import seek_streams_before_resuming
from phaseflow.streams.faust_table_start import start_tables_at_once
from phaseflow.streams.monitoring import install as lag_install
from phaseflow.streams.notify import install as notify_install
from phaseflow.streams.web import install as web_install
from phaseflow.streams.web.api import HttpApi
from phaseflow.streams.web.collectors import PhaseTimingCollector, PredictionSystemCollector
from phaseflow.streams.web.worker_state import WorkerState

log = logging.getLogger(__name__)


#: Outputs of the readiness agent that must commit atomically with the records that caused
#: them (exactly_once). See ``FaustPublisher``.
TRANSACTIONAL_OUTPUTS = frozenset(
    {
        TopicName.PHASE_TRIGGERS,
        TopicName.RERUN_REQUESTS,
        TopicName.ALERTS,
        TopicName.DEAD_LETTERS,
    }
)


class FaustPublisher:
    """Publishes through the app's producer, so sends are flushed before offsets commit.

    Under exactly_once, faust-streaming 0.15 puts a send into a transaction only when its
    consumer knows the destination topic and the topic belongs to a co-partitioned group; it
    then uses the transaction of the *destination* partition. For the transactional outputs the
    app therefore subscribes to those topics (``_transactional_outputs`` agent, which drops what
    it reads) and sends to the partition number of the record being processed, so the output
    joins that record's transaction. Keys are unchanged; outputs of one game date share a
    partition, as its completions do.
    """

    def __init__(self, topics: dict[TopicName, Any], *, pinned: frozenset[TopicName]) -> None:
        self._topics = topics
        self._pinned = pinned

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        partition = None
        if topic in self._pinned:
            event = faust.current_event()
            if event is not None:
                partition = event.message.partition
        await self._topics[topic].send(key=key.encode("utf-8"), value=value, partition=partition)


@dataclass
class AppContext(FeatureContext):
    """What features are built from (:class:`FeatureContext`), and what they built."""

    #: The guarantee and idempotence the worker resolved from the broker
    #: (phaseflow.streams.delivery); None for an app built without asking the broker (in-process
    #: tests).
    delivery: Delivery | None = None
    components: Components = field(default_factory=Components)
    http_api: HttpApi | None = None


def _faust_app(settings: Settings) -> Any:
    return faust.App(
        settings.app_id,
        broker=settings.broker_url,
        # TLS/SASL for Faust's own consumers and producers, the same as every other client's.
        broker_credentials=faust_broker_credentials(settings.kafka_security),
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_topic_replication_factor,
        processing_guarantee=settings.faust_processing_guarantee,
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
        broker_commit_interval=settings.kafka_commit_interval_seconds,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_seconds,
        # Static membership (PHASEFLOW_KAFKA_STATIC_MEMBERSHIP, on by default): a worker restarted
        # within the session timeout gets its partitions back without a rebalance of the others.
        consumer_group_instance_id=settings.group_instance_id,
    )


def build_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    clock: Clock | None = None,
    delivery: Delivery | None = None,
) -> AppContext:
    """A fresh Faust app for ``settings`` with every feature installed; nothing is started.

    ``delivery`` is what the worker resolved from the broker (``settings`` is then
    ``delivery.settings``); it is kept for ``GET /status``.
    """
    register_orjson_codec()
    use_broker_highwaters_for_recovery()
    seek_streams_before_resuming()
    retry_coordinator_lookups()
    use_quick_aborted_tx_detection()
    start_tables_at_once()
    commit_after_table_writes()
    commit_partitions_concurrently()
    stop_producers_of_lost_partitions()
    fetch_only_what_is_taken()
    fetch_only_active_partitions()
    retry_concurrent_offsets_quickly()
    app = _faust_app(settings)
    use_fetch_wait(app, settings.kafka_fetch_wait_seconds)
    topics = {
        entry.name: app.topic(
            settings.topic(entry.name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.kafka_topic_partitions,
        )
        for entry in CATALOG
    }
    ctx = AppContext(
        app=app,
        settings=settings,
        registry=registry if registry is not None else load_registry(settings.registry_path),
        clock=clock if clock is not None else clock_for(settings.clock_speed),
        topics=topics,
        publisher=FaustPublisher(topics, pinned=TRANSACTIONAL_OUTPUTS),
        side_publisher=SideProducer(settings),
        delivery=delivery,
    )

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_side_producer(_sender: Any, **_: Any) -> None:
        # One handler for both: the receivers of a signal run in no fixed order.
        for user in ctx.side_publisher_users:
            await user.stop()
        await ctx.side_publisher.stop()

    outputs = app.topic(
        *(settings.topic(name) for name in sorted(TRANSACTIONAL_OUTPUTS)),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka_topic_partitions,
    )

    @app.agent(outputs, name="transactional_outputs")  # type: ignore[untyped-decorator]
    async def _transactional_outputs(stream: Any) -> None:
        # Subscribed only so the consumer knows these topics (see FaustPublisher).
        async for _ in stream:
            pass

    _install_features(ctx)
    _install_fetch_gap_repair(ctx)
    # Written by the side producer only, never in a transaction: a gap there is a loss.
    report_skipped_offsets(
        settings.topic(t) for t in (TopicName.PREDICTION_PROGRESS, TopicName.READINESS_TICKS)
    )
    return ctx


def _install_fetch_gap_repair(ctx: AppContext) -> None:
    """Re-fetch readiness records Faust dropped around a rebalance (streams/faust_fetch_gap)."""
    settings = ctx.settings
    topics = [
        settings.topic(TopicName.PHASE_COMPLETIONS),
        settings.topic(TopicName.READINESS_TICKS),
    ]
    repair = FetchGapRepair(ctx.app, topics, time.monotonic)

    @ctx.app.timer(interval=FETCH_GAP_CHECK_SECONDS)  # type: ignore[untyped-decorator]
    async def _repair_fetch_gaps() -> None:
        try:
            await repair.check()
        except Exception as error:  # noqa: BLE001 - a failed look must not stop the timer
            log.warning("checking for dropped fetched records failed: %r", error)


def _install_features(ctx: AppContext) -> None:
    components = ctx.components
    metrics = ctx.metrics
    readiness = readiness_agent.install(ctx)
    components.readiness = readiness
    metrics.registry.register(PhaseTimingCollector(readiness.date_timings))
    prediction = predictions.install(ctx)
    if prediction is not None:
        worker = prediction.worker
        components.coordinator = prediction.coordinator
        components.prediction_worker = worker
        components.prediction_requests = prediction.requests
        components.history_loader = prediction.history_loader
        metrics.registry.register(PredictionSystemCollector(lambda: worker.stats.systems))
    sinks = prediction_sink.install(ctx)
    if sinks is not None:
        components.prediction_sink = sinks.predictions
        components.audit_sink = sinks.audit
    monitoring = lag_install.install(ctx)
    components.lag_monitor = monitoring.monitor
    components.lag = monitoring.lag
    components.dead_letters = monitoring.dead_letters
    components.recent_alerts = monitoring.recent_alerts
    components.notifiers = notify_install.install(ctx)
    state = WorkerState(components, settings=ctx.settings, delivery=ctx.delivery)
    ctx.http_api = web_install.install(ctx, state)
