"""Rerun requests of the readiness processor: every path asks the one budget, then sends.

A ``failed`` completion, processors missing at a deadline or a stall, the cleanup scan and the
validation gate all come here. The budget (``phaseflow.agents.reruns``, pure) decides: send now,
schedule, nothing new, or open the circuit; this module writes its answer into the state and
puts the rerun request or the ``circuit_open`` alert into the step's outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phaseflow.agents.fallbacks import group_done
from phaseflow.agents.readiness_state import PhaseState, RerunRecord
from phaseflow.agents.reruns import RerunStep, cancel_pending, release_due, request_rerun

if TYPE_CHECKING:
    from phaseflow.agents.outbox import Outbox
    from phaseflow.models.events import PhaseCompletion
    from phaseflow.streams.core.registry import Registry


def for_gate(record: RerunRecord) -> bool:
    """The pending rerun was asked for by the validation gate."""
    return record.next_reason == "validation_failed"


class RerunDispatch:
    """Reruns of (date, phase, processor) through the registry's ``[rerun]`` budget.

    A fallback group (``any_of``) is rerun member by member: its primary while the primary's
    budget lasts, then the next member, each with a budget of its own; none once any member is
    done (phaseflow.agents.fallbacks)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._policy = registry.rerun

    def _group(self, state: PhaseState, name: str) -> tuple[str, ...] | None:
        if not self._registry.has_phase(state.phase):
            return None
        return self._registry.phase(state.phase).group_of(name)

    def _group_done(self, state: PhaseState, name: str) -> bool:
        if not self._registry.has_phase(state.phase):
            return name in state.done()
        return group_done(self._registry.phase(state.phase), state, name)

    def after_completion(
        self, state: PhaseState, completion: PhaseCompletion, outbox: Outbox
    ) -> PhaseState:
        """Schedule a rerun for a failure; a later success cancels a pending one."""
        name = completion.processor_name
        current = state.processors[name]
        group = self._group(state, name)
        if current.status == "failed":
            if group is None:
                return self.schedule(state, name, "failed", outbox)
            # A failed member asks for a rerun of its group (primary first), unless another
            # member already succeeded.
            if self._group_done(state, name):
                return state
            return self.schedule(state, group[0], "failed", outbox)
        if current.status not in ("success", "partial"):
            return state
        # A success makes pending reruns of the processor (and of its group) unnecessary.
        for member in group or (name,):
            pending = state.reruns.get(member)
            # A gate rerun stays scheduled: the gate, not the status, says whether it is needed.
            if pending and pending.next_due_at is not None and not for_gate(pending):
                rerun = cancel_pending(pending)
                state = state.model_copy(update={"reruns": {**state.reruns, member: rerun}})
        return state

    def schedule(self, state: PhaseState, name: str, reason: str, outbox: Outbox) -> PhaseState:
        """Ask the rerun budget for a rerun of ``name``; send it, schedule it or open the
        circuit as it says. For a fallback group: the first member whose circuit is not open."""
        group = self._group(state, name)
        if group is None:
            return self.request(state, name, reason, outbox)[0]
        if self._group_done(state, name):
            return state
        for member in group:
            record = state.reruns.get(member)
            if record is not None and record.circuit_open:
                continue
            state, step = self.request(state, member, reason, outbox)
            if step.action != "circuit_opened":
                break  # sent, scheduled or pending: the next member waits its turn
        return state

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
        for name in state.due_reruns(outbox.now):
            record = state.reruns[name]
            if state.trigger is not None if for_gate(record) else self._group_done(state, name):
                state = state.model_copy(
                    update={"reruns": {**state.reruns, name: cancel_pending(record)}}
                )
                continue
            reason = record.next_reason or "failed"
            step = release_due(record, self._policy, outbox.now)
            state = self._apply(state, name, reason, step, outbox)
            group = self._group(state, name)
            if step.action == "circuit_opened" and group is not None and not for_gate(record):
                state = self.schedule(state, group[0], reason, outbox)  # the fallback's turn
        return state
