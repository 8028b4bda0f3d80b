"""Prometheus metrics, one registry per app (never the process-global one).

Several apps in one process (tests, the demo) therefore never collide on metric names. Features
get the app's :class:`Metrics` from their context (``ctx.metrics``); series computed from a
feature's state (``phaseflow.streams.web.collectors``) are registered by the app wiring.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "NOT_READY_CAUSES", "LagSnapshot", "Metrics", "NotReadyCause"]

#: Consumer lag in messages per (topic, partition), as a lag monitor reports it.
LagSnapshot = Mapping[tuple[str, int], int]
#: Entries per table name that this worker holds (its partitions), read at each scrape.
TableSizes = Mapping[str, int]

#: Why ``GET /ready`` answers 503, as a closed set (the reasons' text holds the details).
NotReadyCause = Literal[
    "broker_unreachable", "no_partitions", "recovery_pending", "lag_over_limit", "notifier"
]
NOT_READY_CAUSES: Final[tuple[NotReadyCause, ...]] = get_args(NotReadyCause)

# Phases run for minutes to hours; sink flushes for milliseconds to tens of seconds.
_PHASE_BUCKETS: Final = (30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
_FLUSH_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The service's series. Label values are small closed sets (topics, phases, reasons)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter(
            "phaseflow_events_in", "Records consumed, by topic.", ["topic"], registry=r
        )
        self.triggers_out = Counter(
            "phaseflow_triggers_out", "Phase triggers published.", ["phase", "reason"], registry=r
        )
        self.dead_letters = Counter(
            "phaseflow_dead_letters",
            "Records dead-lettered, by error type.",
            ["error_type"],
            registry=r,
        )
        self.sink_flushes = Counter(
            "phaseflow_sink_flushes",
            "Sink flushes, by sink and outcome (ok, retry, failed).",
            ["sink", "outcome"],
            registry=r,
        )
        self.sink_flush_seconds = Histogram(
            "phaseflow_sink_flush_seconds",
            "Duration of one sink flush (staging load and MERGE).",
            ["sink"],
            buckets=_FLUSH_BUCKETS,
            registry=r,
        )
        self.sink_oldest_unwritten = Gauge(
            "phaseflow_sink_oldest_unwritten_seconds",
            "Age of the oldest row a sink holds that is not written (merged) yet; 0 when none.",
            ["sink"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "phaseflow_consumer_lag_messages",
            "Messages behind the end of each partition (set from the lag provider at scrape).",
            ["topic", "partition"],
            registry=r,
        )
        self.phase_duration = Histogram(
            "phaseflow_phase_duration_seconds",
            "From a phase's first completion to its trigger.",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "phaseflow_http_requests",
            "HTTP API requests, by route and status code.",
            ["route", "status"],
            registry=r,
        )
        self.completions_dropped = Counter(
            "phaseflow_completions_dropped",
            "Completions that changed nothing: duplicate (same processor, execution_id and "
            "status seen before) or failed_after_done (a failure after the processor was done).",
            ["reason"],
            registry=r,
        )
        self.timestamps_clamped = Counter(
            "phaseflow_completion_timestamps_clamped",
            "Completions stamped further in the future than the tolerance; clamped to their "
            "receive time.",
            registry=r,
        )
        self.table_entries = Gauge(
            "phaseflow_table_entries",
            "Entries this worker holds per table (its partitions); retention keeps it bounded.",
            ["table"],
            registry=r,
        )
        self.worker_ready = Gauge(
            "phaseflow_worker_ready",
            "1 when GET /ready answers 200, 0 when it answers 503 (checked at each scrape and "
            "each /ready call; 0 until the first check).",
            registry=r,
        )
        self.worker_not_ready_cause = Gauge(
            "phaseflow_worker_not_ready_cause",
            "1 for each cause GET /ready reports now, 0 for the others.",
            ["cause"],
            registry=r,
        )
        for cause in NOT_READY_CAUSES:  # every cause is a series, so a rule can watch each
            self.worker_not_ready_cause.labels(cause=cause).set(0)
        # process_resident_memory_bytes and friends: the soak benchmark plots them.
        ProcessCollector(registry=r)
        self._lag_source: Callable[[], LagSnapshot] | None = None
        self._table_source: Callable[[], TableSizes] | None = None

    def record_readiness(self, causes: Collection[NotReadyCause]) -> None:
        """What ``GET /ready`` answered: ready exactly when there is no cause."""
        self.worker_ready.set(0 if causes else 1)
        for cause in NOT_READY_CAUSES:
            self.worker_not_ready_cause.labels(cause=cause).set(1 if cause in causes else 0)

    def set_lag_source(self, source: Callable[[], LagSnapshot] | None) -> None:
        """Where ``phaseflow_consumer_lag_messages`` is read from at each scrape."""
        self._lag_source = source

    def refresh_lag(self) -> None:
        self.consumer_lag.clear()  # partitions that moved to another worker disappear
        if self._lag_source is None:
            return
        for (topic, partition), lag in self._lag_source().items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def set_table_source(self, source: Callable[[], TableSizes] | None) -> None:
        """Where ``phaseflow_table_entries`` is read from at each scrape."""
        self._table_source = source

    def refresh_tables(self) -> None:
        self.table_entries.clear()
        if self._table_source is None:
            return
        for table, entries in self._table_source().items():
            self.table_entries.labels(table=table).set(entries)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        self.refresh_lag()
        self.refresh_tables()
        return generate_latest(self.registry)
