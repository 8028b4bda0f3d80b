"""Liveness and readiness: is the broker reachable, are partitions assigned and their tables
recovered, is lag bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from phaseflow.streams.core.kafka_clients import KafkaConnection, connection_problem
from phaseflow.streams.core.metrics import LagSnapshot, Metrics, NotReadyCause

#: How long one broker probe may take before the broker counts as unreachable.
PROBE_TIMEOUT_SECONDS: Final = 2.0
#: A probe result is reused for this long, so frequent /ready polls cost one request a second.
PROBE_CACHE_SECONDS: Final = 1.0


class BrokerUnreachableError(Exception):
    """No bootstrap server answered a metadata request in time."""


async def probe_broker(connection: KafkaConnection, within: float = PROBE_TIMEOUT_SECONDS) -> None:
    """One cheap metadata request (no topics) to the first bootstrap server that answers, over
    the configured TLS/SASL; the error says why none did and which setting to check."""
    problem = await connection_problem(connection, answer_within=within)
    if problem is not None:
        raise BrokerUnreachableError(problem)


@dataclass(frozen=True)
class ReadyReport:
    ready: bool
    reasons: tuple[str, ...]
    total_lag: int | None
    #: One per reason, in the same order: the closed set the metrics label them with.
    causes: tuple[NotReadyCause, ...] = ()


class ReadinessCheck:
    """Combines the conditions of ``GET /ready``; every input is injectable.

    ``problems`` lists the notifier routes that cannot deliver.
    ``recovery_pending`` says why the tables are not recovered for the current assignment (see
    streams/recovery_progress.py), or None once they are.
    With ``metrics``, every report is recorded there (``phaseflow_worker_ready``), so the
    series says exactly what the last ``/ready`` or scrape found.
    """

    def __init__(
        self,
        *,
        probe: Callable[[], Awaitable[None]],
        assigned_partitions: Callable[[], int],
        recovery_pending: Callable[[], str | None],
        lag: Callable[[], LagSnapshot | None],
        max_lag_messages: int,
        problems: Callable[[], list[str]] = list,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = PROBE_CACHE_SECONDS,
    ) -> None:
        self._probe = probe
        self._assigned = assigned_partitions
        self._recovery_pending = recovery_pending
        self._lag = lag
        self._max_lag = max_lag_messages
        self._problems = problems
        self._metrics = metrics
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._probed_at: float | None = None
        self._probe_error: str | None = None
        self._lock = asyncio.Lock()

    async def broker_error(self) -> str | None:
        """Why the broker is unreachable, or None; cached for ``cache_seconds``."""
        async with self._lock:  # concurrent polls share one probe
            now = self._clock()
            if self._probed_at is None or now - self._probed_at >= self._cache_seconds:
                try:
                    await self._probe()
                except BrokerUnreachableError as error:
                    self._probe_error = str(error)
                else:
                    self._probe_error = None
                self._probed_at = self._clock()
            return self._probe_error

    async def report(self) -> ReadyReport:
        found: list[tuple[NotReadyCause, str]] = []
        broker_error = await self.broker_error()
        if broker_error is not None:
            found.append(("broker_unreachable", f"broker unreachable ({broker_error})"))
        if self._assigned() == 0:
            found.append(("no_partitions", "no partitions assigned (starting or rebalancing)"))
        else:
            pending = self._recovery_pending()
            if pending is not None:
                found.append(("recovery_pending", pending))
        snapshot = self._lag()
        total = sum(snapshot.values()) if snapshot is not None else None
        if total is not None and total > self._max_lag:
            found.append(
                ("lag_over_limit", f"consumer lag {total} messages exceeds {self._max_lag}")
            )
        found.extend(("notifier", problem) for problem in self._problems())
        causes = tuple(cause for cause, _ in found)
        if self._metrics is not None:
            self._metrics.record_readiness(causes)
        return ReadyReport(
            ready=not found,
            reasons=tuple(reason for _, reason in found),
            total_lag=total,
            causes=causes,
        )
