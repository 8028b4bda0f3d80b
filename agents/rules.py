"""Trigger rules: given a phase's readiness, should the next phase start now, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.readiness_state import PhaseState
    from streams.registry import PhaseSpec


@dataclass(frozen=True)
class Decision:
    """A phase counts as complete: fire the next phase with this rule and reason."""

    reason: str
    rule: str
    completed: tuple[str, ...]
    missing: tuple[str, ...]


def evaluate_ready(spec: PhaseSpec, state: PhaseState, expected: frozenset[str]) -> Decision | None:
    """The ``ready`` decision for ``state`` under ``spec``'s rule, or None if not ready yet."""
    done = state.done()
    completed = tuple(sorted(done & expected))
    missing = tuple(sorted(expected - done))
    if not expected:
        return None
    if spec.rule == "all_complete":
        if not missing:
            return Decision("ready", "all_complete", completed, missing)
        return None
    if spec.rule == "critical_plus_majority":
        critical_missing = (frozenset(spec.critical) & expected) - done
        share = 100.0 * len(completed) / len(expected)
        if not critical_missing and share >= spec.majority_pct:
            return Decision("ready", "critical_plus_majority", completed, missing)
        return None
    raise ValueError(f"unknown rule {spec.rule!r} for phase {spec.phase}")
