"""No silent stalls: when a held (date, phase) becomes an alert.

Pure functions of (registry, state, now): the readiness processor asks them on every tick and
turns the answers into alerts; nothing here does I/O or reads a clock of its own.

- A gated phase that holds state and has not finished ``stall_after`` (registry-level, per-phase
  override) after it started raises one ``phase_stalled`` alert, whatever its age: the cleanup
  scan only looks back ``lookback_days``, and phases without tiers or ``max_wait`` have no
  deadline of their own. Its missing processors get one rerun request each (unless it is held
  by phase order: then the earlier phase is the one to fix).
- Such a phase whose state expires (idle for ``retention_days``) raises a critical
  ``phase_stalled`` alert instead of vanishing with an INFO line.
- State of a phase the registry no longer declares (an orphan) is reported once with an
  ``orphan_state`` alert and expires like any other state.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from phaseflow.agents.fallbacks import describe
from phaseflow.agents.rules import evaluate_ready

if TYPE_CHECKING:
    from phaseflow.agents.outbox import Outbox
    from phaseflow.agents.readiness_state import PhaseState
    from phaseflow.streams.core.registry import Registry


def registry_digest(registry: Registry) -> str:
    """Fingerprint of the registry a state was last evaluated under: a different one at start
    means the rules changed, so every held date is evaluated again."""
    return hashlib.sha256(registry.model_dump_json().encode()).hexdigest()[:16]


def is_declared(registry: Registry, state: PhaseState) -> bool:
    return registry.has_phase(state.phase)


def is_finished(registry: Registry, state: PhaseState, expected: frozenset[str]) -> bool:
    """Fired its next phase; the last phase (nothing to fire) when its rule is met."""
    if state.trigger is not None:
        return True
    if registry.has_phase(state.phase + 1):
        return False
    return evaluate_ready(registry.phase(state.phase), state, expected) is not None


def started_at(state: PhaseState) -> datetime | None:
    """When the phase started: its predecessor's trigger, else its first completion."""
    return state.started_at or state.first_completion_at


def stall_due(
    registry: Registry, state: PhaseState, expected: frozenset[str], now: datetime
) -> bool:
    """A gated, declared phase past its ``stall_after`` without finishing, not yet alerted."""
    if not is_declared(registry, state) or not registry.phase(state.phase).gated:
        return False
    since = started_at(state)
    if since is None or state.stall_alerted_at is not None:
        return False
    if now - since < registry.stall_after_for(state.phase):
        return False
    return not is_finished(registry, state, expected)


def _subject(state: PhaseState) -> str:
    return f"{state.game_date.isoformat()}:phase_{state.phase}"


def _waiting(
    registry: Registry, state: PhaseState, missing: list[str], blocked_by: int | None
) -> str:
    if registry.has_phase(state.phase):  # name each missing fallback group with its members
        missing = describe(registry.phase(state.phase), missing)
    parts = []
    if blocked_by is not None:
        parts.append(f"phase {blocked_by} has not fired")
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    return "; ".join(parts) or "its rule is not met"


def raise_stall(
    registry: Registry,
    state: PhaseState,
    outbox: Outbox,
    *,
    missing: list[str],
    blocked_by: int | None,
) -> None:
    """The one ``phase_stalled`` alert of a (date, phase), saying what it waits for."""
    after = registry.stall_after_for(state.phase)
    outbox.alert(
        "phase_stalled",
        _subject(state),
        f"phase {state.phase} of {state.game_date} has not finished {_hours(after)} after it "
        f"started ({_waiting(registry, state, missing, blocked_by)}); rerun it "
        f"(phaseflow rerun --date {state.game_date} --phase {state.phase}) or change the registry",
        details={
            "stall_after": after.total_seconds(),
            "missing": list(missing),
            "blocked_by_phase": blocked_by,
            "started_at": _iso(started_at(state)),
        },
    )


def raise_expired_unfinished(
    registry: Registry,
    state: PhaseState,
    outbox: Outbox,
    *,
    missing: list[str],
    blocked_by: int | None,
) -> None:
    """A gated phase that never finished is dropped by retention: critical, not an INFO line."""
    waiting = _waiting(registry, state, missing, blocked_by)
    outbox.alert(
        "phase_stalled",
        _subject(state),
        f"readiness state of phase {state.phase} of {state.game_date} expired (idle for over "
        f"{registry.retention_days} days) without finishing ({waiting}); "
        f"phase {state.phase + 1} never started for that date",
        severity="critical",
        details={
            "expired": True,
            "missing": list(missing),
            "blocked_by_phase": blocked_by,
            "last_write_at": _iso(state.updated_at),
        },
    )


def raise_orphan(registry: Registry, state: PhaseState, outbox: Outbox) -> None:
    """State of a phase the registry does not declare: reported once, expires by retention."""
    declared = ", ".join(str(spec.phase) for spec in registry.phases)
    idle_since = state.updated_at or state.last_completion_at
    expires = idle_since + timedelta(days=registry.retention_days) if idle_since else None
    outbox.alert(
        "orphan_state",
        _subject(state),
        f"readiness state {state.key} belongs to phase {state.phase}, which the registry no "
        f"longer declares (declared: {declared}); it is kept read-only and expires "
        f"{'at ' + expires.isoformat() if expires else 'after retention_days idle'}",
        details={"declared_phases": [spec.phase for spec in registry.phases]},
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
