"""Firing: the ready rule, deadlines and the validation gate decide whether a phase fires its
successor, at most once per round (docs/phase-firing.md).

``Firing.evaluate`` is the one decision per (date, phase) and step: a due re-fire (a rerun of a
phase after it fired, phaseflow.agents.rearm), else nothing while the phase fired already, is
ungated or held by phase order (phaseflow.agents.phase_order), else the ready rule and, on ticks
only, its deadlines (phaseflow.agents.rules), then the validation gate. A fired trigger goes
into the step's outbox with its ledger entry in the state; ``save_all`` writes the state and marks
the phase it started, and ``release_successors`` lets a phase held only by order fire in the same
step.
"""

from __future__ import annotations

import logging
from datetime import datetime

from phaseflow.agents.fallbacks import counted
from phaseflow.agents.outbox import Outbox
from phaseflow.agents.phase_order import upstream_states
from phaseflow.agents.readiness_state import (
    GATE_FIELDS,
    PhaseState,
    ProcessorRecord,
    TriggerLedgerEntry,
)
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.agents.rearm import rearmed, refire_due
from phaseflow.agents.rerun_dispatch import RerunDispatch
from phaseflow.agents.reruns import RerunStep
from phaseflow.agents.rules import (
    Decision,
    evaluate_deadline,
    evaluate_ready,
    first_deadline,
    gate_failure,
    next_deadline,
)
from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.registry import PhaseSpec, Registry

log = logging.getLogger(__name__)


class Firing:
    """Decides and records the triggers of the states in ``store``."""

    def __init__(self, *, registry: Registry, store: ReadinessStore, reruns: RerunDispatch) -> None:
        self._registry = registry
        self._store = store
        self._reruns = reruns

    def evaluate(
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
        if state.trigger is not None or not spec.gated or self._store.blocked_by(state) is not None:
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
        expected = spec.expected_processors(state.game_date, self._store.today())
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
        expected = spec.expected_processors(state.game_date, self._store.today())
        decision = Decision("rerun", "rerun", *counted(spec, state, expected))
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
                    self._registry, state.phase, lambda n: self._store.state(state.game_date, n)
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

    def release_successors(self, state: PhaseState, outbox: Outbox) -> None:
        """A phase that just fired lets the next one fire too if it was only held by order."""
        while state.trigger is not None and any(
            t.game_date == state.game_date and t.phase == state.phase + 1 for t in outbox.triggers
        ):
            successor = self._store.state(state.game_date, state.phase + 1)
            if successor is None or successor.trigger is not None:
                return
            updated = self.evaluate(successor, outbox)
            if updated != successor:
                self.save_all(updated, outbox)
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
            state = self._reruns.schedule(state, name, "missing_at_deadline", outbox)
        return state.model_copy(update={"deadline_handled": True})

    def _reject_at_gate(self, state: PhaseState, why: str, outbox: Outbox) -> PhaseState:
        """Validation failed: no trigger; per rejected completion a rerun through the budget and
        one alert for what was decided (nothing new while a rerun is already scheduled)."""
        latest = max(state.processors.values(), key=_received_order)
        if state.gate_rejected_id == latest.last_execution_id:
            return state
        steps: list[RerunStep] = []
        for name in sorted(state.processors):
            state, step = self._reruns.request(state, name, "validation_failed", outbox)
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

    def save_all(self, state: PhaseState, outbox: Outbox, *, touch: bool = True) -> None:
        """Write the state; a fired trigger also marks the started phase (cleanup waits from
        there). The ledger is written before the trigger is sent, so the two must commit
        together: a replayed input is dropped as a duplicate and would not send the trigger
        again. Under exactly_once the readiness agent handles each batch of records inside
        ``one_transaction`` (streams/core/faust_table_writes.py), so state and trigger land in
        one transaction. at_least_once has no transaction: a crash between the two can lose the
        trigger, and the phase's stall alert (docs/readiness.md) is what notices it."""
        self._store.save(state, touch=touch)
        for trigger in outbox.triggers:
            if trigger.game_date == state.game_date and trigger.phase == state.phase + 1:
                started = self._store.state(trigger.game_date, trigger.phase) or PhaseState(
                    game_date=trigger.game_date, phase=trigger.phase
                )
                repeat = bool(state.round or state.previous_triggers)
                if repeat and (started.processors or started.trigger):
                    self._store.save(rearmed(started, trigger.triggered_at))
                elif started.started_at is None:
                    self._store.save(
                        started.model_copy(update={"started_at": trigger.triggered_at})
                    )


def _received_order(record: ProcessorRecord) -> datetime:
    """A processor's latest completion by receive time (older states: its timestamp)."""
    return record.last_received_at or record.last_completed_at


def _rerun_outcome(steps: list[RerunStep]) -> str:
    """What the budget decided, for an alert: sent now, or when it goes out."""
    if all(step.action == "send" for step in steps):
        return "rerun requested"
    due = min(step.due_at for step in steps if step.due_at is not None)
    return f"rerun scheduled for {due.isoformat()} (rerun backoff)"
