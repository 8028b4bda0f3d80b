"""Source fallbacks (``any_of`` groups): which member satisfied a group, and whom to rerun.

A group counts as one expected processor named after its primary (its first member); it is done
once any member is. What counted is the member that succeeded first (by its first completion
timestamp; the primary when it is done too), so a trigger's ``completed`` list and the status
name the source that was actually used. Reruns of a missing group go to the primary while its
rerun budget lasts, then to the next member (docs/readiness.md, "Source fallbacks").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phaseflow.agents.readiness_state import PhaseState
    from phaseflow.streams.core.registry import PhaseSpec


def satisfier(spec: PhaseSpec, state: PhaseState, name: str) -> str | None:
    """The processor whose success counts for expected ``name`` (itself, or for a group's
    primary the member that succeeded first), or None while it is not done."""
    return _satisfier(spec, state, name, state.done())


def _satisfier(spec: PhaseSpec, state: PhaseState, name: str, done: frozenset[str]) -> str | None:
    if name in done:
        return name
    group = spec.group_of(name)
    if group is None or group[0] != name:
        return None
    members = [member for member in group if member in done]
    if not members:
        return None
    return min(members, key=lambda member: state.processors[member].first_completed_at)


def counted(
    spec: PhaseSpec, state: PhaseState, expected: frozenset[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(completed, missing) of ``expected``: completed names the processors that counted."""
    completed: list[str] = []
    missing: list[str] = []
    done = state.done()  # once, not once per expected name
    for name in sorted(expected):
        found = _satisfier(spec, state, name, done)
        if found is None:
            missing.append(name)
        else:
            completed.append(found)
    return tuple(sorted(completed)), tuple(missing)


def satisfied_by(spec: PhaseSpec, state: PhaseState) -> dict[str, str]:
    """Groups met by a fallback rather than their primary: primary -> the member that counted."""
    found = {group[0]: satisfier(spec, state, group[0]) for group in spec.any_of}
    return {
        primary: member
        for primary, member in found.items()
        if member is not None and member != primary
    }


def group_done(spec: PhaseSpec, state: PhaseState, name: str) -> bool:
    """``name`` needs no rerun: it is done, or its fallback group is."""
    group = spec.group_of(name) or (name,)
    done = state.done()
    return any(member in done for member in group)


def describe(spec: PhaseSpec, names: list[str]) -> list[str]:
    """Missing names for an alert: a group's primary with its fallbacks, ``a (or b)``."""
    described = []
    for name in names:
        group = spec.group_of(name)
        if group is None or group[0] != name:
            described.append(name)
        else:
            described.append(f"{name} (or {' or '.join(group[1:])})")
    return described
