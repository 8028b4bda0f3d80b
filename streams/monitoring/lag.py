"""The consumer-lag monitor (docs/lag-monitor.md).

:class:`LagMonitor` samples the watched groups every ``lag_sample_interval_seconds``, keeps a
window of ``lag_window_seconds`` per partition (:mod:`phaseflow.streams.monitoring.lag_status`
decides the statuses), publishes a ``consumer_lag`` alert when a group's status *changes* to WARN,
REWIND, STALL or STOP (never once per sample), exposes the current rows for metrics, and runs a
watchdog: when this service's own group has been STALL/STOP for ``own_stall_after``, it calls
``on_own_stall()`` so the worker can restart its consumer.

The alerts go out through an :data:`AlertPublisher`
(:class:`phaseflow.streams.monitoring.alert_publisher.KafkaAlertPublisher` in the worker); the
``phaseflow lag`` command is :mod:`phaseflow.streams.monitoring.lag_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import JsonValue

from phaseflow.models.events import Alert
from phaseflow.models.fields import Severity
from phaseflow.streams.core.clock import Clock, SystemClock
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag_sampler import LagSampler, PartitionLag
from phaseflow.streams.monitoring.lag_status import (
    LagEvaluator,
    LagPolicy,
    LagStatus,
    Verdict,
    worst,
)

log = logging.getLogger(__name__)

AlertPublisher = Callable[[Alert], Awaitable[None]]
OwnStallCallback = Callable[[], Awaitable[None]]

#: Rounds of per-group total lag kept for the status page's chart (10 min at the 5 s default).
LAG_HISTORY_ROUNDS = 120

_SEVERITY: dict[LagStatus, Severity] = {
    LagStatus.OK: "info",
    LagStatus.NO_COMMIT: "info",  # shown, never alerted
    LagStatus.WARN: "warning",
    LagStatus.REWIND: "warning",  # often an operator's deliberate offset reset
    LagStatus.STALL: "critical",
    LagStatus.STOP: "critical",
}
_STUCK = frozenset({LagStatus.STALL, LagStatus.STOP})
#: Statuses that raise no alert: healthy, or a partition the group never committed (a new
#: group or partition is not an incident; its lag shows on /metrics and in `phaseflow lag`).
_QUIET = frozenset({LagStatus.OK, LagStatus.NO_COMMIT})


class LagSource(Protocol):
    """Where samples come from: :class:`LagSampler`, or a fake in unit tests."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def sample(self, groups: Sequence[str]) -> list[PartitionLag]: ...


@dataclass(frozen=True)
class LagRow:
    """One partition's current numbers and status: what metrics and ``phaseflow lag`` show."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag: int
    raw_lag: int
    lag_seconds: float | None
    status: LagStatus
    reason: str
    sampled_at: datetime
    committed_at: datetime | None = None  # the group's last commit; None if unknown
    #: No committed offset (status NO_COMMIT): ``committed`` is the log-start offset and
    #: ``lag`` the whole log from there.
    no_commit: bool = False


def counted_status(row: LagRow) -> LagStatus:
    """``row``'s status as it counts for its group: a partition without a commit whose log is
    empty has nothing to read (a member assigned an idle partition never commits it), so it
    counts as OK; the row itself still says NO_COMMIT."""
    if row.status is LagStatus.NO_COMMIT and row.lag == 0:
        return LagStatus.OK
    return row.status


def group_worst(rows: Iterable[LagRow]) -> LagStatus:
    """A group's status: the worst :func:`counted_status` of its ``rows`` (OK for none)."""
    return worst(counted_status(row) for row in rows)


def worst_row(rows: Iterable[LagRow]) -> LagRow | None:
    """The row that decides the group's status (the most behind among equals), or None."""
    return max(rows, key=lambda row: (counted_status(row).rank, row.lag), default=None)


def lag_policy(settings: Settings) -> LagPolicy:
    return LagPolicy(
        window=timedelta(seconds=settings.lag_window_seconds),
        alert_messages=settings.lag_alert_messages,
    )


def watched_groups(settings: Settings) -> list[str]:
    """This service's own group (``app_id``), its prediction workers' group and ``lag_groups``,
    without duplicates."""
    return list(
        dict.fromkeys([settings.app_id, settings.prediction_workers_group, *settings.lag_groups])
    )


def select_groups(
    discovered: Iterable[str], own: Sequence[str], include: str, exclude: str
) -> list[str]:
    """``own`` (always, in order), then the ``discovered`` groups that fully match ``include``
    and do not fully match ``exclude`` (an empty ``exclude`` excludes nothing), sorted."""
    wanted = re.compile(include)
    unwanted = re.compile(exclude) if exclude else None
    picked = sorted(
        group
        for group in set(discovered)
        if wanted.fullmatch(group) and not (unwanted is not None and unwanted.fullmatch(group))
    )
    return list(dict.fromkeys([*own, *picked]))


def build_alert(
    group: str, status: LagStatus, previous: LagStatus, rows: Sequence[LagRow], now: datetime
) -> Alert:
    """The ``consumer_lag`` alert for ``group`` entering ``status`` (key ``consumer_lag:group``)."""
    bad = sorted(
        (row for row in rows if row.group == group and row.status is not LagStatus.OK),
        key=lambda row: (-row.status.rank, -row.lag, row.topic, row.partition),
    )
    partitions: list[JsonValue] = [
        {
            "topic": row.topic,
            "partition": row.partition,
            "status": str(row.status),
            "committed": row.committed,
            "end": row.end,
            "lag": row.lag,
            "raw_lag": row.raw_lag,
            "lag_seconds": row.lag_seconds,
            "reason": row.reason,
        }
        for row in bad
    ]
    message = f"consumer group {group} is {status} (was {previous})"
    if bad:
        first = bad[0]
        message += (
            f": {len(bad)} partition(s) not OK; {first.topic}[{first.partition}] "
            f"{first.status}: {first.reason}"
        )
    return Alert(
        kind="consumer_lag",
        severity=_SEVERITY[status],
        subject=group,
        message=message,
        details={
            "status": str(status),
            "previous": str(previous),
            "total_lag": sum(row.lag for row in rows if row.group == group),
            "partitions": partitions,
        },
        raised_at=now,
    )


class LagMonitor(AsyncService):
    """Samples, evaluates, alerts on transitions, and watches this service's own group."""

    def __init__(
        self,
        settings: Settings,
        *,
        groups: Sequence[str] | None = None,
        publish: AlertPublisher | None = None,
        on_own_stall: OwnStallCallback | None = None,
        own_group: str | None = None,
        own_stall_after: timedelta | None = None,
        interval: float | None = None,
        clock: Clock | None = None,
        source: LagSource | None = None,
    ) -> None:
        # Without explicit groups: the deployment's own groups plus every discovered group that
        # passes PHASEFLOW_LAG_INCLUDE / PHASEFLOW_LAG_EXCLUDE, rediscovered every round.
        self.discover = groups is None
        self.own_groups = watched_groups(settings)
        self._include, self._exclude = settings.lag_include, settings.lag_exclude
        self.groups: list[str] = list(dict.fromkeys(groups or self.own_groups))
        self.interval = interval if interval is not None else settings.lag_sample_interval_seconds
        self.policy = lag_policy(settings)
        self._clock = clock or SystemClock()
        #: The broker sampler this monitor built (None when a ``source`` was passed in).
        self.sampler: LagSampler | None = None
        if source is None:
            source = self.sampler = LagSampler(settings, clock=self._clock)
        self._source = source
        self._publish = publish
        self._on_own_stall = on_own_stall
        self.own_group = own_group if own_group is not None else settings.app_id
        # Default: as long as the window, i.e. about when the own group would turn STOP.
        self.own_stall_after = own_stall_after or self.policy.window
        self._evaluator = LagEvaluator(self.policy, self._clock)
        self._latest: dict[tuple[str, str, int], PartitionLag] = {}
        self._rows: list[LagRow] = []
        self._history: deque[tuple[datetime, dict[str, int]]] = deque(maxlen=LAG_HISTORY_ROUNDS)
        # The status last acted on per group: an alert goes out when the status differs from it.
        self._announced: dict[str, LagStatus] = {}
        self._own_stuck_since: datetime | None = None
        self._source_started = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.rounds = 0
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, *, background: bool = True) -> None:
        """Open the broker clients; with ``background`` also sample every ``interval``."""
        if not self._source_started:
            await self._source.start()
            self._source_started = True
        if background and self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and close the clients. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task
        if self._source_started:
            self._source_started = False
            await self._source.stop()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                await self.sample_once()
            except Exception as error:  # noqa: BLE001 - a broker outage must not end monitoring
                self.last_error = repr(error)
                log.warning("lag sample failed: %r", error)
            remaining = self.interval - (loop.time() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, remaining))

    # -- one round ---------------------------------------------------------------------------
    async def sample_once(self) -> list[LagRow]:
        """Sample all groups, update the windows, alert on transitions, run the watchdog."""
        await self._discover()
        sampled = await self._source.sample(self.groups)
        uncommitted = [row for row in sampled if row.no_commit]
        for row in sampled:
            if row.no_commit:
                # Its commit is gone (offsets deleted): the last committed sample is stale.
                self._latest.pop(row.key, None)
                continue
            self._latest[row.key] = row
            self._evaluator.observe(row.key, row.sample())
        for key in self._evaluator.forget_stale():
            self._latest.pop(key, None)
        verdicts = self._evaluator.evaluate_all()
        rows = [_row(self._latest[key], verdicts[key]) for key in verdicts if key in self._latest]
        rows.extend(_row(row, _no_commit_verdict(row)) for row in uncommitted)
        self._rows = rows
        self._history.append((self._clock.now(), group_totals(rows)))
        self.rounds += 1
        self.last_error = None
        for group in self.groups:
            await self._announce(group, rows)
        await self._watchdog()
        return rows

    async def _discover(self) -> None:
        if not self.discover or self.sampler is None:
            return
        try:
            found = await self.sampler.list_groups()
        except Exception as error:  # noqa: BLE001 - keep watching the groups known so far
            log.warning("listing consumer groups failed (%r); watching the known ones", error)
            return
        self.groups = select_groups(found, self.own_groups, self._include, self._exclude)

    def rows(self) -> list[LagRow]:
        """Every known partition's numbers and status as of the last round (for metrics).

        A snapshot, not re-evaluated between rounds, so it always agrees with the alerts sent;
        ``sampled_at`` and :attr:`last_error` tell how fresh it is.
        """
        return list(self._rows)

    def history(self) -> list[tuple[datetime, dict[str, int]]]:
        """The last rounds' total lag per group (groups with committed offsets), oldest first."""
        return list(self._history)

    def group_status(self, group: str) -> LagStatus:
        """The group's worst partition status as of the last round (``OK`` if none known)."""
        return group_worst(row for row in self._rows if row.group == group)

    def group_statuses(self) -> dict[str, LagStatus]:
        return {group: self.group_status(group) for group in self.groups}

    async def _announce(self, group: str, rows: Sequence[LagRow]) -> None:
        status = group_worst(row for row in rows if row.group == group)
        previous = self._announced.get(group, LagStatus.OK)
        if status is previous:
            return
        if status in _QUIET:
            if previous not in _QUIET:
                log.info("consumer group %s recovered (was %s)", group, previous)
            self._announced[group] = status
            return
        alert = build_alert(group, status, previous, rows, self._clock.now())
        log.warning("%s", alert.message)
        if self._publish is None:
            self._announced[group] = status
            return
        try:
            await self._publish(alert)
        except Exception as error:  # noqa: BLE001 - retried on the next round, not lost
            log.warning("publishing the consumer_lag alert for %s failed: %r", group, error)
            return
        self._announced[group] = status

    async def _watchdog(self) -> None:
        if self._on_own_stall is None or self.own_group not in self.groups:
            return
        now = self._clock.now()
        if self.group_status(self.own_group) not in _STUCK:
            self._own_stuck_since = None
            return
        if self._own_stuck_since is None:
            self._own_stuck_since = now
            return
        if now - self._own_stuck_since < self.own_stall_after:
            return
        # Restart the clock, so a restarted consumer gets a whole threshold to catch up.
        self._own_stuck_since = now
        log.warning("own consumer group %s stuck; asking the worker to restart it", self.own_group)
        try:
            await self._on_own_stall()
        except Exception:  # the monitor outlives a failing callback
            log.exception("on_own_stall callback failed")


def group_totals(rows: Sequence[LagRow]) -> dict[str, int]:
    """Total lag per group of ``rows``."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.group] = totals.get(row.group, 0) + row.lag
    return totals


def _no_commit_verdict(sampled: PartitionLag) -> Verdict:
    return Verdict(
        LagStatus.NO_COMMIT,
        f"no committed offset; lag counted from the log start (offset {sampled.committed})",
    )


def _row(sampled: PartitionLag, verdict: Verdict) -> LagRow:
    return LagRow(
        group=sampled.group,
        topic=sampled.topic,
        partition=sampled.partition,
        committed=sampled.committed,
        end=sampled.end,
        lag=sampled.lag,
        raw_lag=sampled.raw_lag,
        lag_seconds=sampled.lag_seconds,
        status=verdict.status,
        reason=verdict.reason,
        sampled_at=sampled.at,
        committed_at=sampled.committed_at,
        no_commit=sampled.no_commit,
    )
