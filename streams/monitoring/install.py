"""``install(ctx)``: the consumer-lag monitor inside the worker.

The monitor watches the worker's own group (``app_id``) and ``lag_groups``. It starts with the
app (an app task, retried while the broker is unreachable), stops before shutdown, publishes
``consumer_lag`` alerts through ``ctx.side_publisher`` (an alert is not the output of a consumed
record, see phaseflow.streams.core.side_producer) and serves :attr:`Monitoring.lag`: the own group's
lag per (topic, partition) *assigned to this worker*, the shape streams/web expects for ``/lag``,
``/ready`` and the lag gauge.

Watchdog: when the own group has been STALL/STOP for a window and one of the stuck partitions
is a readiness partition (completions, ticks) assigned to this worker, the worker **crashes
itself** (``app.crash``), so its supervisor
(systemd, Kubernetes, WorkerProcess(restart_on_exit=True)) starts a fresh process that rejoins
the group and resumes from the committed offsets. An in-process resume/seek is not attempted:
the usual cause of a stall is an agent stuck on a record (or a downstream call), which a seek
does not unblock, and seeking under a running agent races with its offset commits (and, under
exactly_once, with its open transaction). A stuck partition owned by another worker is left to
that worker's own watchdog. The prediction workers' and the sinks' groups stall while BigQuery
is down; they have their own timeouts, retries and breakers and get the ``consumer_lag`` alert
(the workers' group is watched by default, see ``phaseflow.streams.monitoring.lag.watched_groups``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import Gauge

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert
from phaseflow.streams.core.clock import Clock, SystemClock
from phaseflow.streams.core.metrics import LagSnapshot
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.dlq_letters import format_age
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from phaseflow.streams.faust_consumer_view import describe_partition
from phaseflow.streams.monitoring import recent_alerts
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow
from phaseflow.streams.monitoring.lag_metrics import LagRowsCollector
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.monitoring.recent_alerts import RecentAlerts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Collection

    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)

_STUCK: Final = frozenset({LagStatus.STALL, LagStatus.STOP})
_START_RETRY_SECONDS: Final = 5.0


class OwnConsumerStalledError(RuntimeError):
    """Raised into the app (``app.crash``) by the watchdog so the supervisor restarts it."""


def own_lag(
    rows: Collection[LagRow], group: str, assigned: Collection[tuple[str, int]] | None
) -> dict[tuple[str, int], int]:
    """``{(topic, partition): lag}`` of ``group``; only ``assigned`` partitions unless None.

    Partitions without a committed offset are left out: their "lag" is the whole log, which
    says nothing about whether this worker keeps up (``/ready`` reads this)."""
    return {
        (row.topic, row.partition): row.lag
        for row in rows
        if row.group == group
        and not row.no_commit
        and (assigned is None or (row.topic, row.partition) in assigned)
    }


def stuck_here(
    rows: Collection[LagRow],
    group: str,
    assigned: Collection[tuple[str, int]],
    topics: Collection[str],
) -> list[LagRow]:
    """The own group's STALL/STOP partitions of ``topics`` that this worker owns."""
    return [
        row
        for row in rows
        if row.group == group
        and row.status in _STUCK
        and row.topic in topics
        and (row.topic, row.partition) in assigned
    ]


@dataclass(frozen=True)
class Monitoring:
    """What :func:`install` runs in the worker, for the status views and ``/lag``."""

    monitor: LagMonitor
    #: The own group's lag per (topic, partition) assigned to this worker.
    lag: Callable[[], LagSnapshot]
    dead_letters: DeadLetterTracker
    recent_alerts: RecentAlerts


def monitoring_clock(ctx: FeatureContext) -> Clock:
    """The clock lag, stall windows and letter ages are measured with.

    They compare against record timestamps, which are wall time, so a sped-up pipeline clock
    (``PHASEFLOW_CLOCK_SPEED``, soak runs) must not speed them up; otherwise the app's clock,
    so tests can drive them with a manual one.
    """
    return ctx.clock if ctx.settings.clock_speed == 1.0 else SystemClock()


def install(ctx: FeatureContext) -> Monitoring:
    """Create the monitor, the dead-letter gauges and the alert feed, tied to the app's
    lifecycle."""
    app = ctx.app
    settings = ctx.settings

    def assigned() -> set[tuple[str, int]]:
        try:
            return {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        except Exception:  # noqa: BLE001 - no consumer yet (not started): nothing is assigned
            return set()

    async def publish(alert: Alert) -> None:
        await ctx.side_publisher.send(TopicName.ALERTS, alert.key, encode(alert))

    wall = monitoring_clock(ctx)

    # The readiness path calls nothing outside Kafka, so a stall there is a stuck worker. The
    # prediction and sink topics stall while BigQuery is down; they have their own timeouts,
    # retries and breakers, and a restart would not help (it would only interrupt readiness).
    watched = frozenset(
        settings.topic(name) for name in (TopicName.PHASE_COMPLETIONS, TopicName.READINESS_TICKS)
    )
    monitor: LagMonitor

    async def on_own_stall() -> None:
        mine = stuck_here(monitor.rows(), monitor.own_group, assigned(), watched)
        if not mine:
            log.warning(
                "own consumer group %s is stuck, but not on readiness partitions of this "
                "worker; no restart (see the consumer_lag alert)",
                monitor.own_group,
            )
            return
        names = ", ".join(f"{row.topic}[{row.partition}] {row.status}" for row in mine)
        for row in mine:  # where it is stuck, before the restart wipes it out
            log.warning("stuck partition: %s", describe_partition(app, row.topic, row.partition))
        log.critical(
            "WATCHDOG: own consumer group %s stuck for more than %s on %s; crashing the worker "
            "so its supervisor restarts it",
            monitor.own_group,
            monitor.own_stall_after,
            names,
        )
        await app.crash(OwnConsumerStalledError(f"consumer stuck on {names}"))

    monitor = LagMonitor(settings, publish=publish, on_own_stall=on_own_stall, clock=wall)

    @app.task  # type: ignore[untyped-decorator]
    async def _start_lag_monitor() -> None:
        # A broker that is down at start must not crash the worker: retry until it answers.
        while True:
            try:
                await monitor.start()
            except Exception as error:  # noqa: BLE001
                log.warning(
                    "lag monitor could not start (%r); retrying in %.0f s",
                    error,
                    _START_RETRY_SECONDS,
                )
                await asyncio.sleep(_START_RETRY_SECONDS)
            else:
                log.info("lag monitor watching %s", ", ".join(monitor.groups))
                return

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_lag_monitor(_sender: Any, **_: Any) -> None:
        await monitor.stop()

    ctx.metrics.registry.register(LagRowsCollector(monitor.rows))
    snapshot: Callable[[], LagSnapshot] = lambda: own_lag(  # noqa: E731
        monitor.rows(), monitor.own_group, assigned()
    )
    tracker = _install_dlq_gauges(ctx, publish)
    return Monitoring(
        monitor=monitor,
        lag=snapshot,
        dead_letters=tracker,
        # For the status page (streams/web/status_page.py): every worker's alerts, not only ours.
        recent_alerts=recent_alerts.install(ctx),
    )


def _install_dlq_gauges(
    ctx: FeatureContext, publish: Callable[[Alert], Awaitable[None]]
) -> DeadLetterTracker:
    """Gauges for the count and age of the oldest dead letter not replayed, and a ``dlq`` alert
    when letters appear (the count leaves 0)."""
    registry = ctx.metrics.registry
    count = Gauge(
        "phaseflow_dead_letters_unreplayed",
        "Dead letters not replayed yet (one per original record).",
        registry=registry,
    )
    failed_again = Gauge(
        "phaseflow_dead_letters_failed_again",
        "Replays that failed again and were not force-replayed (phaseflow dlq replay --force).",
        registry=registry,
    )
    oldest = Gauge(
        "phaseflow_dead_letters_oldest_unreplayed_seconds",
        "Age of the oldest dead letter not replayed yet (either kind); 0 when there is none.",
        registry=registry,
    )
    tracker = DeadLetterTracker(ctx.settings)
    announced = [0]

    # Incremental reads (only what is new), at the lag monitor's pace.
    interval = ctx.settings.lag_sample_interval_seconds

    @ctx.app.timer(interval=interval)  # type: ignore[untyped-decorator]
    async def _dead_letter_gauges() -> None:
        try:
            await tracker.poll()
        except Exception as error:  # noqa: BLE001 - gauges keep their last value; retried
            log.warning("reading the dead letters failed: %r", error)
            return
        now = monitoring_clock(ctx).now()
        age = tracker.oldest_age(now)
        count.set(tracker.unreplayed)
        failed_again.set(tracker.failed_again)
        oldest.set(0.0 if age is None else age.total_seconds())
        waiting = tracker.unreplayed + tracker.failed_again
        if waiting and not announced[0]:
            alert = Alert(
                kind="dlq",
                severity="warning",
                subject=ctx.settings.topic(TopicName.DEAD_LETTERS),
                message=(
                    f"{tracker.unreplayed} dead letter(s) not replayed and "
                    f"{tracker.failed_again} replay(s) failed again, the oldest failed "
                    f"{format_age(age or now - now)} ago (phaseflow dlq list)"
                ),
                details={"unreplayed": tracker.unreplayed, "failed_again": tracker.failed_again},
                raised_at=now,
            )
            try:
                await publish(alert)
            except Exception as error:  # noqa: BLE001 - retried at the next poll
                log.warning("publishing the dlq alert failed: %r", error)
                return
        announced[0] = waiting

    @ctx.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_tracker(_sender: Any, **_: Any) -> None:
        await tracker.stop()

    return tracker
