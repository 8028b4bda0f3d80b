"""Rerun requests of the readiness processor: every path asks the one budget, then sends.

A ``failed`` completion, processors missing at a deadline or a stall, the cleanup scan and the
validation gate all come here. The budget (``phaseflow.agents.reruns``, pure) decides: send now,
schedule, nothing new, or open the circuit; this module writes its answer into the state and
puts the rerun request or the ``circuit_open`` alert into the step's outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phaseflow.agents.readiness_state import PhaseState, RerunRecord
from phaseflow.agents.reruns import RerunStep, cancel_pending, release_due, request_rerun

if TYPE_CHECKING:
    from phaseflow.agents.outbox import Outbox
    from phaseflow.models.events import PhaseCompletion
    from phaseflow.streams.core.registry import RerunSpec


def for_gate(record: RerunRecord) -> bool:
    """The pending rerun was asked for by the validation gate."""
    return record.next_reason == "validation_failed"


class RerunDispatch:
    """Reruns of (date, phase, processor) through the registry's ``[rerun]`` budget."""

    def __init__(self, policy: RerunSpec) -> None:
        self._policy = policy

    def after_completion(
        self, state: PhaseState, completion: PhaseCompletion, outbox: Outbox
    ) -> PhaseState:
        """Schedule a rerun for a failure; a later success cancels a pending one."""
        name = completion.processor_name
        current = state.processors[name]
        if current.status == "failed":
            return self.schedule(state, name, "failed", outbox)
        pending = state.reruns.get(name)
        # A gate rerun stays scheduled: the gate, not the status, says whether it is needed.
        if current.status in ("success", "partial") and pending and not for_gate(pending):
            rerun = cancel_pending(pending)
            return state.model_copy(update={"reruns": {**state.reruns, name: rerun}})
        return state

    def schedule(self, state: PhaseState, name: str, reason: str, outbox: Outbox) -> PhaseState:
        """Ask the rerun budget for a rerun of ``name``; send it, schedule it or open the
        circuit as it says."""
        return self.request(state, name, reason, outbox)[0]

    def request(
        self, state: PhaseState, name: str, reason: str, outbox: Outbox
    ) -> tuple[PhaseState, RerunStep]:
        record = state.reruns.get(name, RerunRecord())
        step = request_rerun(record, self._policy, reason, outbox.now)
        return self._apply(state, name, reason, step, outbox), step

    def _apply(
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

    def send_due(self, state: PhaseState, outbox: Outbox) -> PhaseState:
        """Scheduled reruns whose time has come; one no longer needed is cancelled."""
        done = state.done()
        for name in state.due_reruns(outbox.now):
            record = state.reruns[name]
            if state.trigger is not None if for_gate(record) else name in done:
                state = state.model_copy(
                    update={"reruns": {**state.reruns, name: cancel_pending(record)}}
                )
                continue
            step = release_due(record, self._policy, outbox.now)
            state = self._apply(state, name, record.next_reason or "failed", step, outbox)
        return state
