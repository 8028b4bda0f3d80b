"""Replay recorded completions offline through the readiness processor under another registry.

``phaseflow replay`` (phaseflow.streams.replay) reads a past day's completions back from the log;
this module runs them through the very :class:`~phaseflow.agents.readiness.ReadinessProcessor`
the worker runs (same intake, rules, tiers, firing, reruns, stalls, SLA and cleanup), with a
plain dict as its table, a list as its publisher and a manual clock:

* each completion is handled at its recorded receive time (the broker's LogAppendTime stamp,
  the time the worker measured its deadlines from);
* between completions the clock moves one ``tick`` at a time, as the worker's timer does
  (``PHASEFLOW_READINESS_TICK_SECONDS``), and the ticks it asks for are handled at once (on the
  worker they go through the ticks topic: a fraction of a tick later);
* after the last completion the ticks go on until ``until``: a deadline, rerun or stall alert
  that comes after the last completion is decided too.

Nothing leaves the process: what the processor would have sent is kept in the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, PhaseTrigger, RerunRequest
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.topics import TopicName


@dataclass(frozen=True)
class RecordedCompletion:
    """One completion record as the log holds it: its bytes, when the broker appended it, and
    where it is (dead letters of the replay name it)."""

    value: bytes
    received_at: datetime
    origin: Origin


@dataclass
class ReplayOutcome:
    """What the processor would have sent, in the order it would have sent it."""

    triggers: list[PhaseTrigger] = field(default_factory=list)
    reruns: list[RerunRequest] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    #: Completions the processor would have dead-lettered (e.g. a processor the registry does
    #: not know).
    dead_lettered: int = 0


class _KeptPublisher:
    """The processor's publisher: keeps every record it would send, sends nothing."""

    def __init__(self, outcome: ReplayOutcome) -> None:
        self._outcome = outcome

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        del key
        if topic == TopicName.PHASE_TRIGGERS:
            self._outcome.triggers.append(decode(PhaseTrigger, value))
        elif topic == TopicName.RERUN_REQUESTS:
            self._outcome.reruns.append(decode(RerunRequest, value))
        elif topic == TopicName.ALERTS:
            self._outcome.alerts.append(decode(Alert, value))
        elif topic == TopicName.DEAD_LETTERS:
            self._outcome.dead_lettered += 1


@dataclass(frozen=True)
class ReplaySettings:
    """The worker settings the processor's decisions depend on."""

    tick: timedelta
    pipeline_timezone: str
    max_message_bytes: int
    future_tolerance: timedelta


def horizon(registry: Registry) -> timedelta:
    """How long after its last completion a day can still cause something: its longest deadline
    or stall wait, the cleanup interval, then the whole rerun backoff of the budget."""
    waits = [registry.cleanup.interval]
    for spec in registry.phases:
        waits.extend(tier.after for tier in spec.tiers)
        if spec.max_wait is not None:
            waits.append(spec.max_wait)
        waits.append(registry.stall_after_for(spec.phase))
    return max(waits) + registry.rerun.backoff * (1 << registry.rerun.max_attempts)


async def replay(
    registry: Registry,
    completions: Sequence[RecordedCompletion],
    *,
    settings: ReplaySettings,
    until: datetime,
) -> ReplayOutcome:
    """Run ``completions`` (any order: they are taken by receive time) through a fresh
    readiness processor under ``registry`` and tick on until ``until``."""
    outcome = ReplayOutcome()
    if not completions:
        return outcome
    ordered = sorted(completions, key=lambda record: record.received_at)
    clock = ManualClock(ordered[0].received_at)
    processor = ReadinessProcessor(
        registry=registry,
        table={},
        publisher=_KeptPublisher(outcome),
        clock=clock,
        pipeline_timezone=settings.pipeline_timezone,
        max_message_bytes=settings.max_message_bytes,
        durations={},
        future_tolerance=settings.future_tolerance,
    )
    ticker = _Ticker(processor, clock, settings.tick)
    with _agents_quiet():
        for record in ordered:
            await ticker.run_until(record.received_at)
            clock.set(record.received_at)
            await processor.handle(record.value, record.origin, record_time=record.received_at)
        await ticker.run_until(max(until, ordered[-1].received_at))
    return outcome


@contextmanager
def _agents_quiet() -> Iterator[None]:
    """The processor's log lines ("phase 4 of ... stalled") would describe a day that is not
    happening: below ERROR they are dropped while it replays."""
    agents = logging.getLogger(__name__.rpartition(".")[0])
    level = agents.level
    agents.setLevel(logging.ERROR)
    try:
        yield
    finally:
        agents.setLevel(level)


class _Ticker:
    """The worker's timer on the manual clock: every ``tick``, the due ticks are handled."""

    _ORIGIN = Origin(TopicName.READINESS_TICKS.value, 0, -1, None)

    def __init__(self, processor: ReadinessProcessor, clock: ManualClock, tick: timedelta) -> None:
        self._processor = processor
        self._clock = clock
        self._tick = tick
        self._next = clock.now() + tick

    async def run_until(self, moment: datetime) -> None:
        """Every timer run up to and including ``moment``."""
        while self._next <= moment:
            self._clock.set(self._next)
            for tick in self._processor.due_ticks():
                await self._processor.handle_tick(encode(tick), self._ORIGIN)
            self._next += self._tick
