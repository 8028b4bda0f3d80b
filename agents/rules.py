"""Trigger rules: given a phase's readiness and the time, should the next phase start, and why.

Pure functions of (registry spec, state, expected set, now): no I/O, no clock of their own, so
every rule, tier and deadline is unit-tested with plain values. Durations are added to UTC
instants, so a "4h" deadline is four real hours even across a daylight-saving change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from phaseflow.agents.fallbacks import counted
from phaseflow.agents.readiness_state import GATE_FIELDS

if TYPE_CHECKING:
    from phaseflow.agents.readiness_state import PhaseState
    from phaseflow.streams.core.registry import PhaseSpec, ValidationSpec


@dataclass(frozen=True)
class Decision:
    """The phase counts as complete (``ready``) or its deadline passed (``timeout``)."""

    reason: str
    rule: str
    completed: tuple[str, ...]
    missing: tuple[str, ...]


def _split(
    spec: PhaseSpec, state: PhaseState, expected: frozenset[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # A fallback group counts once, done as soon as any member is (phaseflow.agents.fallbacks).
    return counted(spec, state, expected)


def evaluate_ready(spec: PhaseSpec, state: PhaseState, expected: frozenset[str]) -> Decision | None:
    """The ``ready`` decision for ``state`` under ``spec``'s rule, or None if not ready yet."""
    if not expected:
        return None
    completed, missing = _split(spec, state, expected)
    if spec.rule == "all_complete":
        if not missing:
            return Decision("ready", "all_complete", completed, missing)
        return None
    if spec.rule == "critical_plus_majority":
        critical_missing = (frozenset(spec.critical) & expected) - spec.satisfied(state.done())
        share = 100.0 * len(completed) / len(expected)
        if not critical_missing and share >= spec.majority_pct:
            return Decision("ready", "critical_plus_majority", completed, missing)
        return None
    raise ValueError(f"unknown rule {spec.rule!r} for phase {spec.phase}")


def deadlines(spec: PhaseSpec, state: PhaseState) -> list[datetime]:
    """Every tier and max_wait deadline of the phase, measured from when phaseflow received its
    first completion (never from a publisher's timestamp)."""
    anchor = state.received_since
    if anchor is None:
        return []
    moments = [anchor + tier.after for tier in spec.tiers]
    if spec.max_wait is not None:
        moments.append(anchor + spec.max_wait)
    return sorted(moments)


def first_deadline(spec: PhaseSpec, state: PhaseState) -> datetime | None:
    """The earliest deadline, passed or not: after a completion, the tick that decides it."""
    return next(iter(deadlines(spec, state)), None)


def next_deadline(spec: PhaseSpec, state: PhaseState, now: datetime) -> datetime | None:
    """The first deadline still ahead of ``now`` (what the timer must wake up for)."""
    return next((moment for moment in deadlines(spec, state) if moment > now), None)


def evaluate_deadline(
    spec: PhaseSpec, state: PhaseState, expected: frozenset[str], now: datetime
) -> Decision | None:
    """The ``timeout`` decision at ``now``: the first passed tier whose minimum is met, else
    ``max_wait`` once it passed; None while no deadline applies."""
    anchor = state.received_since
    if anchor is None or not expected:
        return None
    completed, missing = _split(spec, state, expected)
    elapsed = now - anchor
    for index, tier in enumerate(spec.tiers, start=1):
        if elapsed >= tier.after and len(completed) >= tier.min_complete:
            rule = f"tier_{index}_{tier.min_complete}_of_{len(expected)}"
            return Decision("timeout", rule, completed, missing)
    if spec.max_wait is not None and elapsed >= spec.max_wait:
        return Decision("timeout", "max_wait", completed, missing)
    return None


def gate_failure(validation: ValidationSpec, state: PhaseState) -> str | None:
    """Why the validation gate rejects the phase (before phase 6), or None if it passes."""
    totals = dict.fromkeys(GATE_FIELDS, 0)
    for record in state.processors.values():
        for name in GATE_FIELDS:
            totals[name] += record.gate.get(name, 0)
    problems = []
    if totals["total_predictions"] < validation.min_predictions:
        problems.append(
            f"{totals['total_predictions']} predictions < minimum {validation.min_predictions}"
        )
    expected = totals["expected_players"]
    coverage = 100.0 * totals["completed_players"] / expected if expected else 0.0
    if coverage < validation.min_completion_pct:
        problems.append(
            f"{coverage:.1f}% of requested players covered < minimum "
            f"{validation.min_completion_pct:g}% ({totals['completed_players']}/{expected})"
        )
    return "; ".join(problems) or None
