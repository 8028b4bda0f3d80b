"""Whether the validation gate holds a phase back, for the status page and ``phaseflow status``.

The readiness agent records the dedup id of the completion its gate rejected
(``PhaseState.gate_rejected_id``). While that completion is still the phase's latest and no
trigger fired, the phase is not done, even though its processors reported ``success``: the page
shows it as REJECTED, with the gate's reason recomputed from the same state.
"""

from __future__ import annotations

from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.rules import gate_failure
from phaseflow.streams.core.registry import PhaseSpec


def gate_rejection(spec: PhaseSpec, state: PhaseState) -> str | None:
    """Why the validation gate rejected the phase's latest completion, or None."""
    if (
        spec.validation is None
        or state.trigger is not None
        or state.gate_rejected_id is None
        or not state.processors
    ):
        return None
    latest = max(state.processors.values(), key=lambda record: record.last_completed_at)
    if latest.last_execution_id != state.gate_rejected_id:
        return None  # a newer completion arrived: the gate has not rejected that one
    return gate_failure(spec.validation, state) or (
        "rejected by the validation gate (it passes under the current registry)"
    )
