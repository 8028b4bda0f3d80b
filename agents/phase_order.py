"""Phase order: a phase fires its successor only after its own predecessor fired it.

Phase N's completions can arrive before phase N - 1 has finished (a processor run by hand, a
rerun, out-of-order backfills). Firing N + 1 then would run it on inputs that are not there yet,
and the later, real trigger of N would not fire N + 1 again. So a gated phase waits for the
trigger of phase N - 1 unless the registry marks it ``independent = true``, or phase N - 1 is
not gated (phase 1's scrapers feed phase 2 without a trigger) or not declared.

Every trigger carries the state of the phases upstream of it (``PhaseTrigger.upstream``), so a
consumer (and ``phaseflow status``) can see what the phase was started on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from phaseflow.agents.readiness_state import PhaseState
    from phaseflow.streams.core.registry import Registry


def waits_for_predecessor(registry: Registry, phase: int) -> bool:
    """Whether ``phase`` may fire only after phase ``phase - 1`` fired."""
    previous = phase - 1
    if registry.phase(phase).independent or not registry.has_phase(previous):
        return False
    return registry.phase(previous).gated


def blocking_phase(
    registry: Registry, state: PhaseState, predecessor: PhaseState | None
) -> int | None:
    """The earlier phase that has to fire before ``state`` may; None when it may fire."""
    if not waits_for_predecessor(registry, state.phase):
        return None
    if predecessor is not None and predecessor.trigger is not None:
        return None
    return state.phase - 1


def upstream_states(
    registry: Registry, firing: int, lookup: Callable[[int], PhaseState | None]
) -> dict[str, str]:
    """For the trigger phase ``firing`` sends: each gated phase before it -> how it finished.

    ``ready`` / ``timeout`` / ``rerun`` / ``manual`` (its trigger's reason) or ``not_fired``
    (possible only upstream of an ``independent`` phase).
    """
    states: dict[str, str] = {}
    for spec in registry.phases:
        if spec.phase >= firing or not spec.gated:
            continue
        state = lookup(spec.phase)
        trigger = state.trigger if state is not None else None
        states[str(spec.phase)] = trigger.reason if trigger is not None else "not_fired"
    return states
