"""Readiness orchestration: record completions per (game_date, phase) and fire the next phase.

``ReadinessProcessor`` owns every decision and is testable with a plain dict as its table, a
list as its publisher and a manual clock. The Faust wiring is in
``phaseflow.agents.readiness_agent``: completions and timer ticks arrive there in stream context and
are handed to ``handle`` and ``handle_tick``; the timer asks ``due_ticks`` what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from phaseflow.agents.envelope import Origin, dead_letter
from phaseflow.agents.intake import (
    DropReason,
    IntakeCounter,
    NoCounter,
    Received,
    identity,
    merged_record,
    receive,
)
from phaseflow.agents.outbox import Outbox
from phaseflow.agents.phase_order import blocking_phase, upstream_states
from phaseflow.agents.phase_timing import DateTiming, PhaseTiming, date_timing, sla_breached
from phaseflow.agents.publisher import Publisher
from phaseflow.agents.readiness_state import (
    GATE_FIELDS,
    MAX_SEEN_IDS,
    PhaseState,
    ProcessorRecord,
    ReadinessTick,
    RerunRecord,
    TickKind,
    TriggerLedgerEntry,
)
from phaseflow.agents.rearm import is_rerun_completion, rearmed, refire_due, with_refire_scheduled
from phaseflow.agents.reruns import RerunStep, cancel_pending, release_due, request_rerun
from phaseflow.agents.rules import (
    Decision,
    evaluate_deadline,
    evaluate_ready,
    first_deadline,
    gate_failure,
    next_deadline,
)
from phaseflow.agents.slowdown import DurationWindow, judge
from phaseflow.agents.stalls import (
    is_declared,
    is_finished,
    raise_expired_unfinished,
    raise_orphan,
    raise_stall,
    registry_digest,
    stall_due,
)
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseCompletion, PhaseTrigger
from phaseflow.models.phases import FIRST_PHASE, LAST_PHASE
from phaseflow.streams.clock import Clock
from phaseflow.streams.registry import PhaseSpec, Registry
from phaseflow.streams.topics import TopicName

log = logging.getLogger(__name__)

# A tick for a date is not re-sent while an earlier one may still be in flight.
TICK_RESEND_AFTER = timedelta(seconds=5)


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
        self._table = table
        #: processor name -> DurationWindow (table bytes): the slowdown history.
        self._durations: MutableMapping[str, Any] = {} if durations is None else durations
        self._publisher = publisher
        self._clock = clock
        self._zone = ZoneInfo(pipeline_timezone)
        self._max_message_bytes = max_message_bytes
        #: How far a publisher's timestamp may be ahead of the receive time before it is clamped.
        self._future_tolerance = future_tolerance
        self._intake: IntakeCounter = intake_counter or NoCounter()
        self._ticks_sent: dict[tuple[date, str], datetime] = {}
        # id(stored dict) -> (that dict, the state it was dumped from); see _decoded.
        self._last_written: dict[int, tuple[Any, PhaseState]] = {}
        # States written under another registry are evaluated again (see phaseflow.agents.stalls).
        self._digest = registry_digest(registry)
        # Orphan states (phase no longer declared) this worker reported since it started.
        self._orphans_reported: set[str] = set()

    # --- time -------------------------------------------------------------------------------

    def today(self) -> date:
        """The pipeline's current date, in its own time zone (decides same-day mode)."""
        return self._clock.now().astimezone(self._zone).date()

    def _expired(self, state: PhaseState) -> bool:
        """Idle for longer than the retention: nothing written for ``retention_days``.

        Idle time, not the game date's age, so a backfill of an old date keeps its state (and
        its trigger ledger) for as long as it is being worked on.
        """
        idle_since = state.updated_at or state.last_completion_at
        retention = timedelta(days=self._registry.retention_days)
        return idle_since is not None and self._clock.now() - idle_since > retention

    # --- table ------------------------------------------------------------------------------

    def state(self, game_date: date, phase: int) -> PhaseState | None:
        return self._decoded(self._table.get(PhaseState.table_key(game_date, phase)))

    def states(self) -> Iterator[PhaseState]:
        """Every state this worker holds (its partitions of the table)."""
        for value in list(self._table.values()):
            if (state := self._decoded(value)) is not None:
                yield state

    def date_timings(self) -> list[DateTiming]:
        """Latency and SLA of every date this worker holds, oldest date first."""
        by_date: dict[date, dict[int, PhaseState]] = {}
        for state in self.states():
            by_date.setdefault(state.game_date, {})[state.phase] = state
        today = self.today()
        return [
            date_timing(self._registry, states, day, today=today, zone=self._zone)
            for day, states in sorted(by_date.items())
        ]

    def _decoded(self, stored: Any) -> PhaseState | None:
        """The state a table value holds. The memory store keeps the very dict this processor
        wrote, so the model it was dumped from is reused instead of validated again (the
        hottest step per event); values recovered from the changelog are parsed."""
        if stored is None:
            return None
        cached = self._last_written.get(id(stored))
        if cached is not None and cached[0] is stored:
            return cached[1]
        return PhaseState.from_table(stored)

    def _save(self, state: PhaseState, *, touch: bool = True) -> None:
        """Write ``state``; ``touch=False`` for bookkeeping (a stall alert, a re-evaluation
        stamp) that must not count as activity, so retention still sees the state idle."""
        updated_at = self._clock.now() if touch or state.updated_at is None else state.updated_at
        state = state.model_copy(update={"updated_at": updated_at, "registry_digest": self._digest})
        stored = state.to_table()
        previous = self._table.get(state.key)
        if previous is not None:
            self._last_written.pop(id(previous), None)
        self._last_written[id(stored)] = (stored, state)
        self._table[state.key] = stored

    # --- completions ------------------------------------------------------------------------

    async def handle(
        self, raw: bytes, origin: Origin, *, record_time: datetime | None = None
    ) -> list[PhaseTrigger]:
        """Process one raw completion record; return the triggers it fired.

        ``record_time`` is when the broker appended the record (None: unknown, the worker's
        clock decides); it is the receive time deadlines are measured from
        (phaseflow.agents.intake)."""
        try:
            completion = self._validate(raw)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return []
        now = self._clock.now()
        game_date, phase = completion.game_date, completion.phase
        state = self.state(game_date, phase) or PhaseState(game_date=game_date, phase=phase)
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
        self._judge_duration(received.completion, outbox)
        rerun_of_fired = is_rerun_completion(state, completion)
        state, dropped = _with_completion(state, received, key)
        if dropped is not None:
            log.info(
                "%s reported failed for %s after it was done; its done status stands",
                completion.processor_name,
                state.key,
            )
            self._intake.dropped(dropped)
        if rerun_of_fired:
            state = with_refire_scheduled(state, now, self._registry.rerun.backoff)
        state = self._after_completion(state, completion, outbox)
        # Deadlines are decided on ticks only: a tick for the date comes after the completions
        # already on its partition, so a backlog read late cannot time out a phase it completes.
        state = self._evaluate(state, outbox, decide_deadlines=False)
        self._save_all(state, outbox)
        self._release_successors(state, outbox)
        await self._send(outbox)
        return outbox.triggers

    def _validate(self, raw: bytes) -> PhaseCompletion:
        completion = decode(PhaseCompletion, raw, max_bytes=self._max_message_bytes)
        known = self._registry.phase_for_processor(completion.processor_name)
        if known is None:
            raise EventDecodeError(
                f"processor_name: unknown processor {completion.processor_name!r} "
                f"(not in the registry)",
                "unknown_processor",
            )
        if known != completion.phase:
            raise EventDecodeError(
                f"phase: processor {completion.processor_name!r} belongs to phase {known}, "
                f"not {completion.phase}",
                "wrong_phase",
            )
        return completion

    def _after_completion(
        self, state: PhaseState, completion: PhaseCompletion, outbox: Outbox
    ) -> PhaseState:
        """Schedule a rerun for a failure; a later success cancels a pending one."""
        name = completion.processor_name
        current = state.processors[name]
        if current.status == "failed":
            return self._schedule_rerun(state, name, "failed", outbox)
        pending = state.reruns.get(name)
        # A gate rerun stays scheduled: the gate, not the status, says whether it is needed.
        if current.status in ("success", "partial") and pending and not _for_gate(pending):
            rerun = cancel_pending(pending)
            return state.model_copy(update={"reruns": {**state.reruns, name: rerun}})
        return state

    def _judge_duration(self, completion: PhaseCompletion, outbox: Outbox) -> None:
        """Compare a successful run's duration with its processor's median, then record it."""
        seconds = completion.duration_seconds
        if seconds is None or not completion.is_done:
            return
        name = completion.processor_name
        policy = self._registry.slowdown
        window = DurationWindow.from_table(self._durations.get(name))
        threshold = self._registry.phase(completion.phase).slowdown_pct
        slow = judge(window, seconds, threshold_pct=threshold, policy=policy)
        if slow is not None:
            outbox.alert(
                "processor_slowdown",
                f"{name}:{completion.game_date.isoformat()}",
                f"{name} took {slow.duration_seconds:.1f} s for {completion.game_date}, "
                f"{slow.slower_by_pct:.0f}% over its median of {slow.median_seconds:.1f} s "
                f"(threshold {threshold:g}%)",
                details={
                    "processor_name": name,
                    "duration_seconds": slow.duration_seconds,
                    "median_seconds": slow.median_seconds,
                    "threshold_pct": threshold,
                    "samples": slow.samples,
                },
            )
        self._durations[name] = window.with_sample(seconds, policy.window).to_table()

    # --- decisions --------------------------------------------------------------------------

    def _evaluate(
        self, state: PhaseState, outbox: Outbox, *, decide_deadlines: bool = True
    ) -> PhaseState:
        """Ready rule, deadlines, validation gate: fire the next phase at most once.

        Without ``decide_deadlines`` (a completion) only the ready rule is applied and a passed
        deadline is left for the next tick (``deadline_at`` then asks the timer for one)."""
        spec = self._registry.phase(state.phase)
        if state.trigger is not None and refire_due(state, outbox.now):
            return self._refire(state, outbox)
        # No deadline while held by phase order: the predecessor's trigger re-evaluates this
        # phase, and a hold that lasts raises a phase_stalled alert (phaseflow.agents.stalls).
        if state.trigger is not None or not spec.gated or self._blocked_by(state) is not None:
            return state.model_copy(update={"deadline_at": None})
        if not self._registry.has_phase(state.phase + 1):
            return state
        return self._decide(spec, state, outbox, decide_deadlines=decide_deadlines)

    def _decide(
        self, spec: PhaseSpec, state: PhaseState, outbox: Outbox, *, decide_deadlines: bool
    ) -> PhaseState:
        """A phase free to fire: the ready rule, then (on ticks) its deadlines, then the
        validation gate."""
        now = outbox.now
        expected = spec.expected_processors(state.game_date, self.today())
        decision = evaluate_ready(spec, state, expected)
        if decision is None and not decide_deadlines:
            return state.model_copy(update={"deadline_at": first_deadline(spec, state)})
        if decision is None:
            decision = evaluate_deadline(spec, state, expected, now)
        if decision is not None and decision.reason == "timeout":
            state = self._on_deadline(spec, state, decision, outbox)
            if spec.on_deadline == "alert":
                decision = None
        if decision is not None and spec.validation is not None:
            why = gate_failure(spec.validation, state)
            if why is not None:
                return self._reject_at_gate(state, why, outbox)
        if decision is None:
            return state.model_copy(update={"deadline_at": next_deadline(spec, state, now)})
        return self._fire(state, decision, outbox)

    def _refire(self, state: PhaseState, outbox: Outbox) -> PhaseState:
        """A rerun of this phase after it fired: fire the next phase again
        (phaseflow.agents.rearm)."""
        assert state.trigger is not None  # noqa: S101 -- only a fired phase re-fires
        spec = self._registry.phase(state.phase)
        expected = spec.expected_processors(state.game_date, self.today())
        done = state.done()
        decision = Decision(
            "rerun", "rerun", tuple(sorted(done & expected)), tuple(sorted(expected - done))
        )
        state = state.model_copy(update={"refire_due_at": None})
        if spec.validation is not None and (why := gate_failure(spec.validation, state)):
            return self._reject_at_gate(state, why, outbox)
        history = (*state.previous_triggers, state.trigger)
        state = state.model_copy(update={"previous_triggers": history})
        return self._fire(state, decision, outbox, nonce=f"round-{len(history)}")

    def _fire(
        self, state: PhaseState, decision: Decision, outbox: Outbox, *, nonce: str = ""
    ) -> PhaseState:
        next_phase = state.phase + 1
        if not nonce and state.round:
            nonce = f"armed-{state.round}"  # a re-armed phase fires again under a new id
        trigger = PhaseTrigger(
            game_date=state.game_date,
            phase=next_phase,
            reason=decision.reason,
            rule=decision.rule,
            completed=list(decision.completed),
            missing=list(decision.missing),
            trigger_id=PhaseTrigger.make_id(state.game_date, next_phase, decision.reason, nonce),
            triggered_at=outbox.now,
            correlation_id=f"{state.game_date.isoformat()}:{next_phase}",
            upstream={
                **upstream_states(
                    self._registry, state.phase, lambda n: self.state(state.game_date, n)
                ),
                str(state.phase): decision.reason,
            },
        )
        outbox.trigger(trigger)
        ledger = TriggerLedgerEntry(
            trigger_id=trigger.trigger_id,
            reason=trigger.reason,
            rule=trigger.rule,
            triggered_at=trigger.triggered_at,
            upstream=trigger.upstream,
            completed=tuple(trigger.completed),
        )
        log.info(
            "phase %s of %s started: %s (%s)",
            next_phase,
            state.game_date,
            decision.reason,
            decision.rule,
        )
        return state.model_copy(update={"trigger": ledger, "deadline_at": None})

    def _blocked_by(self, state: PhaseState) -> int | None:
        """The earlier phase that must fire first (phaseflow.agents.phase_order), or None."""
        predecessor = self.state(state.game_date, state.phase - 1)
        return blocking_phase(self._registry, state, predecessor)

    def _release_successors(self, state: PhaseState, outbox: Outbox) -> None:
        """A phase that just fired lets the next one fire too if it was only held by order."""
        while state.trigger is not None and any(
            t.game_date == state.game_date and t.phase == state.phase + 1 for t in outbox.triggers
        ):
            successor = self.state(state.game_date, state.phase + 1)
            if successor is None or successor.trigger is not None:
                return
            updated = self._evaluate(successor, outbox)
            if updated != successor:
                self._save_all(updated, outbox)
            state = updated

    def _on_deadline(
        self, spec: PhaseSpec, state: PhaseState, decision: Decision, outbox: Outbox
    ) -> PhaseState:
        """Once per phase: alert and request reruns of the processors still missing."""
        if state.deadline_handled or not (decision.missing or spec.on_deadline == "alert"):
            return state
        action = "started anyway" if spec.on_deadline == "trigger" else "not started"
        outbox.alert(
            "phase_timeout",
            f"{state.game_date.isoformat()}:phase_{state.phase}",
            f"phase {state.phase} of {state.game_date} hit its deadline ({decision.rule}) with "
            f"{len(decision.missing)} processor(s) missing; phase {state.phase + 1} {action}",
            details={"rule": decision.rule, "missing": list(decision.missing)},
        )
        for name in decision.missing:
            state = self._schedule_rerun(state, name, "missing_at_deadline", outbox)
        return state.model_copy(update={"deadline_handled": True})

    def _reject_at_gate(self, state: PhaseState, why: str, outbox: Outbox) -> PhaseState:
        """Validation failed: no trigger; per rejected completion a rerun through the budget and
        one alert for what was decided (nothing new while a rerun is already scheduled)."""
        latest = max(state.processors.values(), key=_received_order)
        if state.gate_rejected_id == latest.last_execution_id:
            return state
        steps: list[RerunStep] = []
        for name in sorted(state.processors):
            state, step = self._request_rerun(state, name, "validation_failed", outbox)
            steps.append(step)
        decided = [step for step in steps if step.action in ("send", "scheduled")]
        if decided:
            outbox.alert(
                "validation_failed",
                f"{state.game_date.isoformat()}:phase_{state.phase}",
                f"phase {state.phase} of {state.game_date} failed validation: {why}; "
                f"phase {state.phase + 1} not started; {_rerun_outcome(decided)}",
                severity="critical",
                details={name: latest.gate.get(name, 0) for name in GATE_FIELDS},
            )
        else:
            log.info(
                "phase %s of %s failed validation again (%s); a rerun is already scheduled or "
                "the circuit is open, no new alert",
                state.phase,
                state.game_date,
                why,
            )
        return state.model_copy(
            update={"gate_rejected_id": latest.last_execution_id, "deadline_at": None}
        )

    # --- reruns (every path through one budget: phaseflow.agents.reruns) --------------------------

    def _schedule_rerun(
        self, state: PhaseState, name: str, reason: str, outbox: Outbox
    ) -> PhaseState:
        """Ask the rerun budget for a rerun of ``name``; send it, schedule it or open the
        circuit as it says."""
        return self._request_rerun(state, name, reason, outbox)[0]

    def _request_rerun(
        self, state: PhaseState, name: str, reason: str, outbox: Outbox
    ) -> tuple[PhaseState, RerunStep]:
        record = state.reruns.get(name, RerunRecord())
        step = request_rerun(record, self._registry.rerun, reason, outbox.now)
        return self._apply_rerun(state, name, reason, step, outbox), step

    def _apply_rerun(
        self, state: PhaseState, name: str, reason: str, step: RerunStep, outbox: Outbox
    ) -> PhaseState:
        if step.action == "send":
            outbox.rerun(state.game_date, state.phase, name, reason=reason, attempt=step.attempt)
        elif step.action == "circuit_opened":
            attempts = step.record.requested
            outbox.alert(
                "circuit_open",
                f"{state.game_date.isoformat()}:{state.phase}:{name}",
                f"{name} ({state.game_date}, phase {state.phase}) still not done after "
                f"{attempts} rerun(s); no more automatic reruns",
                severity="critical",
                details={"attempts": attempts, "reason": reason},
            )
        return state.model_copy(update={"reruns": {**state.reruns, name: step.record}})

    def _send_due_reruns(self, state: PhaseState, outbox: Outbox) -> PhaseState:
        done = state.done()
        for name in state.due_reruns(outbox.now):
            record = state.reruns[name]
            if state.trigger is not None if _for_gate(record) else name in done:
                state = state.model_copy(
                    update={"reruns": {**state.reruns, name: cancel_pending(record)}}
                )
                continue
            step = release_due(record, self._registry.rerun, outbox.now)
            state = self._apply_rerun(state, name, record.next_reason or "failed", step, outbox)
        return state

    # --- ticks ------------------------------------------------------------------------------

    async def handle_tick(self, raw: bytes, origin: Origin) -> list[PhaseTrigger]:
        """Re-evaluate one date: deadlines, due reruns, cleanup, stalls, expiry."""
        try:
            tick = decode(ReadinessTick, raw, max_bytes=self._max_message_bytes)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return []
        self._ticks_sent.pop((tick.game_date, tick.kind), None)
        outbox = Outbox(self._clock.now())
        held = self._held_states(tick.game_date)
        orphans = [state for state in held if not is_declared(self._registry, state)]
        states = [state for state in held if is_declared(self._registry, state)]
        if tick.kind == "expire":
            self._expire([state for state in held if self._expired(state)], outbox)
            await self._send(outbox)
            return []
        for orphan in orphans:
            if orphan.key not in self._orphans_reported:
                self._orphans_reported.add(orphan.key)
                raise_orphan(self._registry, orphan, outbox)
                log.warning("readiness state %s is of an undeclared phase", orphan.key)
        before = {state.phase: state for state in states}
        if tick.kind == "cleanup":
            states = self._cleanup(tick.game_date, states, outbox)
        for state in states:
            current = self._fresh(state, before.get(state.phase))
            evaluated = self._evaluate(self._send_due_reruns(current, outbox), outbox)
            # The stall alert and its reruns are bookkeeping: retention still sees the date idle.
            updated = self._check_stall(evaluated, outbox)
            previous = before.get(state.phase)
            if updated != previous or tick.kind == "evaluate":
                self._save_all(updated, outbox, touch=_is_activity(previous, evaluated))
        self._raise_sla_breaches(tick.game_date, outbox)
        await self._send(outbox)
        return outbox.triggers

    def _held_states(self, game_date: date) -> list[PhaseState]:
        """Every state of the date in phase order, declared or not (orphans expire too)."""
        return [
            state
            for phase in range(FIRST_PHASE, LAST_PHASE + 1)
            if (state := self.state(game_date, phase)) is not None
        ]

    def _fresh(self, state: PhaseState, before: PhaseState | None) -> PhaseState:
        """The stored state when a predecessor that fired earlier in this tick wrote it (marked
        it started, or re-armed it); else this tick's own copy."""
        stored = self.state(state.game_date, state.phase)
        if stored is not None and stored != before:
            return stored
        return state

    def _missing(self, state: PhaseState) -> list[str]:
        spec = self._registry.phase(state.phase)
        return sorted(spec.expected_processors(state.game_date, self.today()) - state.done())

    def _check_stall(self, state: PhaseState, outbox: Outbox) -> PhaseState:
        expected = self._registry.phase(state.phase).expected_processors(
            state.game_date, self.today()
        )
        if not stall_due(self._registry, state, expected, outbox.now):
            return state
        missing, blocked_by = self._missing(state), self._blocked_by(state)
        raise_stall(self._registry, state, outbox, missing=missing, blocked_by=blocked_by)
        log.warning("phase %s of %s stalled", state.phase, state.game_date)
        if blocked_by is None:  # held by order: the earlier phase has its own stall and reruns
            for name in missing:
                state = self._schedule_rerun(state, name, "missing_at_deadline", outbox)
        return state.model_copy(update={"stall_alerted_at": outbox.now})

    def due_ticks(self) -> list[ReadinessTick]:
        """Ticks the timer should send now, at most one per (date, kind) in flight.

        A state of an undeclared phase only ever asks for ``evaluate`` (reported once per start)
        and ``expire``: it has no rules to run, so it must not ask again and again.
        """
        now = self._clock.now()
        today = self.today()
        lookback = today - timedelta(days=self._registry.cleanup.lookback_days)
        wanted: dict[tuple[date, TickKind], None] = {}
        by_date: dict[date, dict[int, PhaseState]] = {}
        for state in self.states():
            day = state.game_date
            if self._expired(state):
                wanted[(day, "expire")] = None
                continue
            if not is_declared(self._registry, state):
                if state.key not in self._orphans_reported:
                    wanted[(day, "evaluate")] = None
                continue
            by_date.setdefault(day, {})[state.phase] = state
            for kind in self._kinds_due(state, now, today, lookback):
                wanted[(day, kind)] = None
        for day, states in by_date.items():
            if self._sla_breaches(day, states, now):
                wanted[(day, "sla")] = None
        ticks = []
        for day, kind in wanted:
            sent = self._ticks_sent.get((day, kind))
            if sent is not None and now - sent < TICK_RESEND_AFTER:
                continue
            self._ticks_sent[(day, kind)] = now
            ticks.append(ReadinessTick(game_date=day, kind=kind, issued_at=now))
        return ticks

    def _kinds_due(
        self, state: PhaseState, now: datetime, today: date, lookback: date
    ) -> list[TickKind]:
        """What one declared, live state asks the timer for."""
        kinds: list[TickKind] = []
        if state.registry_digest != self._digest:
            kinds.append("evaluate")
        if (state.deadline_at is not None and state.deadline_at <= now) or refire_due(state, now):
            kinds.append("deadline")
        if state.due_reruns(now):
            kinds.append("rerun")
        if state.game_date >= lookback and self._cleanup_due(state, now):
            kinds.append("cleanup")
        expected = self._registry.phase(state.phase).expected_processors(state.game_date, today)
        if stall_due(self._registry, state, expected, now):
            kinds.append("stall")
        return kinds

    async def send_due_ticks(self, publisher: Publisher) -> int:
        """The timer's job: send every due tick to the partition that owns its date."""
        ticks = self.due_ticks()
        for tick in ticks:
            await publisher.send(
                TopicName.READINESS_TICKS, tick.game_date.isoformat(), encode(tick)
            )
        return len(ticks)

    # --- SLA ------------------------------------------------------------------------------

    def _sla_breaches(
        self, game_date: date, states: dict[int, PhaseState], now: datetime
    ) -> list[tuple[PhaseState, PhaseTiming]]:
        """Phases of a recent date past their SLA and not yet alerted; a phase never seen gets a
        fresh state to record its breach in."""
        if game_date < self.today() - timedelta(days=self._registry.cleanup.lookback_days):
            return []
        timing = date_timing(self._registry, states, game_date, today=self.today(), zone=self._zone)
        breaches = []
        for phase in timing.phases:
            state = states.get(phase.phase) or PhaseState(game_date=game_date, phase=phase.phase)
            if state.sla_breached_at is None and sla_breached(timing, phase, now):
                breaches.append((state, phase))
        return breaches

    def _raise_sla_breaches(self, game_date: date, outbox: Outbox) -> None:
        """One sla_breach alert per (date, phase): the state records it, in the same step."""
        states = {
            spec.phase: state
            for spec in self._registry.phases
            if (state := self.state(game_date, spec.phase)) is not None
        }
        for state, phase in self._sla_breaches(game_date, states, outbox.now):
            spec = self._registry.phase(phase.phase)
            due = phase.sla_due_at
            assert due is not None  # noqa: S101 -- only phases with an SLA can breach it
            outbox.alert(
                "sla_breach",
                f"{game_date.isoformat()}:phase_{phase.phase}",
                f"phase {phase.phase} ({spec.name}) of {game_date} was not complete by its SLA "
                f"of {spec.sla} {self._zone.key}",
                details={
                    "sla": str(spec.sla),
                    "timezone": self._zone.key,
                    "due_at": due.isoformat(),
                    "completed_at": _iso(phase.completed_at),
                },
            )
            log.warning("SLA of phase %s of %s breached", phase.phase, game_date)
            self._save(state.model_copy(update={"sla_breached_at": outbox.now}))

    # --- cleanup and expiry -----------------------------------------------------------------

    def _cleanup_due(self, state: PhaseState, now: datetime) -> bool:
        interval = self._registry.cleanup.interval
        since = state.cleanup_at or state.started_at or state.received_since
        return since is not None and now - since >= interval

    def _cleanup(
        self, game_date: date, states: list[PhaseState], outbox: Outbox
    ) -> list[PhaseState]:
        """Rerun processors still missing in started phases (the job that used to be a cron);
        an outage-sized gap raises one alert instead of a rerun storm."""
        by_phase = {state.phase: state for state in states}
        # A phase whose predecessor fired has started even if none of its processors reported.
        for state in list(by_phase.values()):
            nxt = state.phase + 1
            if state.trigger is not None and nxt not in by_phase and self._registry.has_phase(nxt):
                by_phase[nxt] = PhaseState(
                    game_date=game_date, phase=nxt, started_at=state.trigger.triggered_at
                )
        now, today, interval = outbox.now, self.today(), self._registry.cleanup.interval
        missing: list[tuple[PhaseState, str]] = []
        expected_total = 0
        for state in by_phase.values():
            spec = self._registry.phase(state.phase)
            started = state.started_at or state.received_since
            if not spec.gated or started is None or now - started < interval:
                continue
            if state.trigger is None and state.deadline_at is not None:
                continue  # its tier/max_wait deadline handles what is missing, once
            if state.trigger is None and self._blocked_by(state) is not None:
                continue  # held by phase order: its inputs are not there yet
            expected = spec.expected_processors(game_date, today)
            expected_total += len(expected)
            missing += [(state, name) for name in sorted(expected - state.done())]
        guard = self._registry.cleanup
        share = 100.0 * len(missing) / expected_total if expected_total else 0.0
        if len(missing) > guard.storm_min_missing and share > guard.storm_max_missing_pct:
            outbox.alert(
                "phase_timeout",
                f"{game_date.isoformat()}:cleanup",
                f"cleanup found {len(missing)} of {expected_total} processors missing for "
                f"{game_date} ({share:.0f}%): looks like an outage, no reruns requested",
                severity="critical",
                details={"missing": [f"{s.phase}:{name}" for s, name in missing]},
            )
        else:
            for state, name in missing:
                current = by_phase[state.phase]
                rerun = current.reruns.get(name)
                if rerun is not None and (
                    rerun.next_due_at is not None
                    or (rerun.last_requested_at and now - rerun.last_requested_at < interval)
                ):
                    continue  # one is scheduled, or one was requested recently
                by_phase[state.phase] = self._schedule_rerun(current, name, "cleanup", outbox)
        return [state.model_copy(update={"cleanup_at": now}) for state in by_phase.values()]

    def _expire(self, states: list[PhaseState], outbox: Outbox) -> None:
        """Drop idle states; a gated phase that never finished goes with a critical alert."""
        for state in states:
            stored = self._table.pop(state.key, None)
            self._last_written.pop(id(stored), None)
            self._orphans_reported.discard(state.key)
            days = self._registry.retention_days
            if not is_declared(self._registry, state):
                log.warning("readiness state %s of an undeclared phase expired", state.key)
                continue
            spec = self._registry.phase(state.phase)
            expected = spec.expected_processors(state.game_date, self.today())
            if spec.gated and not is_finished(self._registry, state, expected):
                raise_expired_unfinished(
                    self._registry,
                    state,
                    outbox,
                    missing=self._missing(state),
                    blocked_by=self._blocked_by(state),
                )
                log.warning(
                    "readiness state %s expired unfinished (idle for over %d days)",
                    state.key,
                    days,
                )
                continue
            log.info("readiness state %s expired (idle for over %d days)", state.key, days)

    # --- output -----------------------------------------------------------------------------

    def _save_all(self, state: PhaseState, outbox: Outbox, *, touch: bool = True) -> None:
        """Write the state; a fired trigger also marks the started phase (cleanup waits from
        there). The ledger is written before the trigger is sent: if the send is lost to a
        crash, the replayed input re-sends the same trigger_id instead of leaving it stuck."""
        self._save(state, touch=touch)
        for trigger in outbox.triggers:
            if trigger.game_date == state.game_date and trigger.phase == state.phase + 1:
                started = self.state(trigger.game_date, trigger.phase) or PhaseState(
                    game_date=trigger.game_date, phase=trigger.phase
                )
                repeat = bool(state.round or state.previous_triggers)
                if repeat and (started.processors or started.trigger):
                    self._save(rearmed(started, trigger.triggered_at))
                elif started.started_at is None:
                    self._save(started.model_copy(update={"started_at": trigger.triggered_at}))

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


def _for_gate(record: RerunRecord) -> bool:
    """The pending rerun was asked for by the validation gate."""
    return record.next_reason == "validation_failed"


def _received_order(record: ProcessorRecord) -> datetime:
    """A processor's latest completion by receive time (older states: its timestamp)."""
    return record.last_received_at or record.last_completed_at


def _rerun_outcome(steps: list[RerunStep]) -> str:
    """What the budget decided, for an alert: sent now, or when it goes out."""
    if all(step.action == "send" for step in steps):
        return "rerun requested"
    due = min(step.due_at for step in steps if step.due_at is not None)
    return f"rerun scheduled for {due.isoformat()} (rerun backoff)"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _with_completion(
    state: PhaseState, received: Received, key: str
) -> tuple[PhaseState, DropReason | None]:
    name = received.completion.processor_name
    record, dropped = merged_record(state.processors.get(name), received, key)
    at = received.completion.timestamp
    first, last = state.first_completion_at, state.last_completion_at
    came = state.first_received_at
    updated = state.model_copy(
        update={
            "processors": {**state.processors, name: record},
            "seen_ids": (*state.seen_ids, key)[-MAX_SEEN_IDS:],
            "first_completion_at": min(first, at) if first else at,
            "last_completion_at": max(last, at) if last else at,
            "first_received_at": min(came, received.received_at) if came else received.received_at,
        }
    )
    return updated, dropped
