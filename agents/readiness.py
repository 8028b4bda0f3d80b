"""Readiness orchestration: record completions per (game_date, phase) and fire the next phase.

``ReadinessProcessor`` runs the steps of a completion and of a tick and owns no rule of its
own; each concern is a module of its own:

- intake (decode, dedup, receive time, status order): ``phaseflow.agents.intake``;
- the readiness table and queries over it: ``phaseflow.agents.readiness_store``;
- firing (ready rule, deadlines, validation gate, triggers): ``phaseflow.agents.firing``, with
  phase order (``phase_order``), reruns flowing down (``rearm``) and the rules (``rules``);
- reruns through one budget: ``phaseflow.agents.rerun_dispatch`` over ``phaseflow.agents.reruns``;
- stalls and orphans: ``phaseflow.agents.stalls``; SLA: ``phaseflow.agents.sla``; the cleanup
  scan: ``phaseflow.agents.cleanup``; retention: ``phaseflow.agents.retention``; slowdown:
  ``phaseflow.agents.slowdown``;
- the timer's ticks: ``phaseflow.agents.ticks``; ticks waiting for completions already on the
  broker: ``phaseflow.agents.backlog`` (in the agent).
- a past day replayed offline through this processor under another registry (``phaseflow
  replay``): ``phaseflow.agents.replay``.

Everything is testable with a plain dict as its table, a list as its publisher and a manual
clock. The Faust wiring is in ``phaseflow.agents.readiness_agent``: completions and timer ticks
arrive there in stream context and are handed to ``handle`` and ``handle_tick``; the timer asks
``due_ticks`` what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from phaseflow.agents.cleanup import CleanupScan
from phaseflow.agents.firing import Firing
from phaseflow.agents.intake import (
    IntakeCounter,
    NoCounter,
    identity,
    receive,
    validate,
    with_completion,
)
from phaseflow.agents.outbox import Outbox
from phaseflow.agents.phase_timing import DateTiming, date_timing
from phaseflow.agents.readiness_state import PhaseState, ReadinessTick
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.agents.rearm import is_rerun_completion, with_refire_scheduled
from phaseflow.agents.rerun_dispatch import RerunDispatch
from phaseflow.agents.retention import Retention
from phaseflow.agents.sla import SlaWatch
from phaseflow.agents.slowdown import record_duration
from phaseflow.agents.stalls import is_declared, raise_orphan, raise_stall, stall_due
from phaseflow.agents.ticks import TickSchedule
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseTrigger
from phaseflow.models.phases import FIRST_PHASE, LAST_PHASE
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.envelope import Origin, dead_letter
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)


class ReadinessProcessor:
    """Turns completions and ticks into at most one ready/timeout trigger per (date, phase),
    rerun requests and alerts."""

    def __init__(
        self,
        *,
        registry: Registry,
        table: MutableMapping[str, Any],
        publisher: Publisher,
        clock: Clock,
        pipeline_timezone: str,
        max_message_bytes: int,
        durations: MutableMapping[str, Any] | None = None,
        future_tolerance: timedelta = timedelta(minutes=5),
        intake_counter: IntakeCounter | None = None,
    ) -> None:
        self._registry = registry
        #: processor name -> DurationWindow (table bytes): the slowdown history.
        self._durations: MutableMapping[str, Any] = {} if durations is None else durations
        self._publisher = publisher
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        #: How far a publisher's timestamp may be ahead of the receive time before it is clamped.
        self._future_tolerance = future_tolerance
        self._intake: IntakeCounter = intake_counter or NoCounter()
        self._store = ReadinessStore(
            registry=registry, table=table, clock=clock, zone=ZoneInfo(pipeline_timezone)
        )
        self._reruns = RerunDispatch(registry)
        self._firing = Firing(registry=registry, store=self._store, reruns=self._reruns)
        self._sla = SlaWatch(registry=registry, store=self._store)
        self._cleanup = CleanupScan(registry=registry, store=self._store, reruns=self._reruns)
        self._retention = Retention(registry=registry, store=self._store, clock=clock)
        self._ticks = TickSchedule(
            registry=registry,
            store=self._store,
            clock=clock,
            retention=self._retention,
            sla=self._sla,
            cleanup=self._cleanup,
        )
        # Orphan states (phase no longer declared) this worker reported since it started.
        self._orphans_reported: set[str] = set()

    # --- table ------------------------------------------------------------------------------

    def today(self) -> date:
        """The pipeline's current date, in its own time zone (decides same-day mode)."""
        return self._store.today()

    def state(self, game_date: date, phase: int) -> PhaseState | None:
        return self._store.state(game_date, phase)

    def states(self) -> Iterator[PhaseState]:
        """Every state this worker holds (its partitions of the table)."""
        return self._store.states()

    def date_timings(self) -> list[DateTiming]:
        """Latency and SLA of every date this worker holds, oldest date first."""
        by_date: dict[date, dict[int, PhaseState]] = {}
        for state in self._store.states():
            by_date.setdefault(state.game_date, {})[state.phase] = state
        today = self.today()
        return [
            date_timing(self._registry, states, day, today=today, zone=self._store.zone)
            for day, states in sorted(by_date.items())
        ]

    # --- completions ------------------------------------------------------------------------

    async def handle(
        self, raw: bytes, origin: Origin, *, record_time: datetime | None = None
    ) -> list[PhaseTrigger]:
        """Process one raw completion record; return the triggers it fired.

        ``record_time`` is when the broker appended the record (None: unknown, the worker's
        clock decides); it is the receive time deadlines are measured from
        (phaseflow.agents.intake)."""
        try:
            completion = validate(self._registry, raw, max_bytes=self._max_message_bytes)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return []
        now = self._clock.now()
        game_date, phase = completion.game_date, completion.phase
        state = self._store.state(game_date, phase) or PhaseState(game_date=game_date, phase=phase)
        key = identity(completion)
        if state.has_seen(key):
            log.debug("duplicate completion %s for %s dropped", key, state.key)
            self._intake.dropped("duplicate")
            return []
        received = receive(
            completion, record_time=record_time, now=now, tolerance=self._future_tolerance
        )
        if received.clamped_by is not None:
            self._intake.clamped()
        outbox = Outbox(now)
        record_duration(self._registry, self._durations, received.completion, outbox)
        rerun_of_fired = is_rerun_completion(state, completion)
        state, dropped = with_completion(state, received, key)
        if dropped is not None:
            log.info(
                "%s reported failed for %s after it was done; its done status stands",
                completion.processor_name,
                state.key,
            )
            self._intake.dropped(dropped)
        if rerun_of_fired:
            state = with_refire_scheduled(state, now, self._registry.rerun.backoff)
        state = self._reruns.after_completion(state, completion, outbox)
        # Deadlines are decided on ticks only: a tick for the date comes after the completions
        # already on its partition, so a backlog read late cannot time out a phase it completes.
        state = self._firing.evaluate(state, outbox, decide_deadlines=False)
        self._firing.save_all(state, outbox)
        self._firing.release_successors(state, outbox)
        await self._send(outbox)
        return outbox.triggers

    # --- ticks ------------------------------------------------------------------------------

    async def handle_tick(self, raw: bytes, origin: Origin) -> list[PhaseTrigger]:
        """Re-evaluate one date: deadlines, due reruns, cleanup, stalls, expiry."""
        try:
            tick = decode(ReadinessTick, raw, max_bytes=self._max_message_bytes)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return []
        self._ticks.received(tick)
        outbox = Outbox(self._clock.now())
        held = self._held_states(tick.game_date)
        orphans = [state for state in held if not is_declared(self._registry, state)]
        states = [state for state in held if is_declared(self._registry, state)]
        if tick.kind == "expire":
            self._retention.expire(
                [state for state in held if self._retention.expired(state)],
                outbox,
                orphans_reported=self._orphans_reported,
            )
            await self._send(outbox)
            return []
        for orphan in orphans:
            if orphan.key not in self._orphans_reported:
                self._orphans_reported.add(orphan.key)
                raise_orphan(self._registry, orphan, outbox)
                log.warning("readiness state %s is of an undeclared phase", orphan.key)
        before = {state.phase: state for state in states}
        if tick.kind == "cleanup":
            states = self._cleanup.run(tick.game_date, states, outbox)
        for state in states:
            current = self._fresh(state, before.get(state.phase))
            evaluated = self._firing.evaluate(self._reruns.send_due(current, outbox), outbox)
            # The stall alert and its reruns are bookkeeping: retention still sees the date idle.
            updated = self._check_stall(evaluated, outbox)
            previous = before.get(state.phase)
            if updated != previous or tick.kind == "evaluate":
                self._firing.save_all(updated, outbox, touch=_is_activity(previous, evaluated))
        self._sla.raise_breaches(tick.game_date, outbox)
        await self._send(outbox)
        return outbox.triggers

    def _held_states(self, game_date: date) -> list[PhaseState]:
        """Every state of the date in phase order, declared or not (orphans expire too)."""
        return [
            state
            for phase in range(FIRST_PHASE, LAST_PHASE + 1)
            if (state := self._store.state(game_date, phase)) is not None
        ]

    def _fresh(self, state: PhaseState, before: PhaseState | None) -> PhaseState:
        """The stored state when a predecessor that fired earlier in this tick wrote it (marked
        it started, or re-armed it); else this tick's own copy."""
        stored = self._store.state(state.game_date, state.phase)
        if stored is not None and stored != before:
            return stored
        return state

    def _check_stall(self, state: PhaseState, outbox: Outbox) -> PhaseState:
        expected = self._registry.phase(state.phase).expected_processors(
            state.game_date, self._store.today()
        )
        if not stall_due(self._registry, state, expected, outbox.now):
            return state
        missing, blocked_by = self._store.missing(state), self._store.blocked_by(state)
        raise_stall(self._registry, state, outbox, missing=missing, blocked_by=blocked_by)
        log.warning("phase %s of %s stalled", state.phase, state.game_date)
        if blocked_by is None:  # held by order: the earlier phase has its own stall and reruns
            for name in missing:
                state = self._reruns.schedule(state, name, "missing_at_deadline", outbox)
        return state.model_copy(update={"stall_alerted_at": outbox.now})

    def due_ticks(self) -> list[ReadinessTick]:
        """Ticks the timer should send now (phaseflow.agents.ticks)."""
        return self._ticks.due(self._orphans_reported)

    async def send_due_ticks(self, publisher: Publisher) -> int:
        """The timer's job: send every due tick to the partition that owns its date."""
        return await self._ticks.send_due(publisher, self._orphans_reported)

    # --- output -----------------------------------------------------------------------------

    async def _send(self, outbox: Outbox) -> None:
        for topic, key, value in outbox.messages:
            await self._publisher.send(topic, key, value)

    async def _dead_letter(self, raw: bytes, origin: Origin, error: str, error_type: str) -> None:
        letter = dead_letter(
            origin, raw, error=error, error_type=error_type, failed_at=self._clock.now()
        )
        await self._publisher.send(TopicName.DEAD_LETTERS, letter.key or "", encode(letter))
        log.warning(
            "dead-lettered %s[%d]@%d: %s", origin.topic, origin.partition, origin.offset, error
        )


#: State fields whose change is bookkeeping, not pipeline activity (retention ignores them).
_BOOKKEEPING = frozenset({"stall_alerted_at", "registry_digest", "updated_at"})


def _is_activity(before: PhaseState | None, after: PhaseState) -> bool:
    if before is None:
        return True
    return before.model_dump(exclude=set(_BOOKKEEPING)) != after.model_dump(
        exclude=set(_BOOKKEEPING)
    )
