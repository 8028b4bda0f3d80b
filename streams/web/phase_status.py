"""Per phase of a game date, what ``GET /status`` shows: expected, done and missing processors,
trigger, deadline, gate, latency, SLA, reruns; and a date's end-to-end latency.

Computed from :class:`PhaseStates` (the readiness processor offers it), never from a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from phaseflow.agents.fallbacks import satisfied_by
from phaseflow.agents.phase_order import blocking_phase
from phaseflow.agents.phase_timing import date_timing, sla_breached
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.web.gate_status import gate_rejection


class PhaseStates(Protocol):
    """Read access to the readiness state of (game date, phase)."""

    def state(self, game_date: date, phase: int) -> PhaseState | None: ...


class _NoStates:
    def state(self, game_date: date, phase: int) -> PhaseState | None:
        del game_date, phase
        return None


#: The states of a worker without readiness: none stored.
NO_STATES: Final[PhaseStates] = _NoStates()


def date_states(registry: Registry, states: PhaseStates, game_date: date) -> dict[int, PhaseState]:
    """Every registry phase's state for ``game_date`` (an empty one where none is stored)."""
    found = {}
    for spec in registry.phases:
        stored = states.state(game_date, spec.phase)
        found[spec.phase] = (
            stored if stored is not None else PhaseState(game_date=game_date, phase=spec.phase)
        )
    return found


def phase_status(
    registry: Registry,
    states: PhaseStates,
    game_date: date,
    today: date,
    *,
    zone: ZoneInfo | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per phase of ``game_date``: expected, done and missing processors, trigger, deadline,
    latency and SLA (``zone``, the pipeline time zone, places the SLA; without it the SLA
    fields stay empty; ``now`` lets ``sla_breached`` say so before the alert is raised)."""
    by_phase = date_states(registry, states, game_date)
    timing = date_timing(registry, by_phase, game_date, today=today, zone=zone or ZoneInfo("UTC"))
    timings = {entry.phase: entry for entry in timing.phases}
    phases: list[dict[str, Any]] = []
    for spec in registry.phases:
        state = by_phase[spec.phase]
        entry = timings[spec.phase]
        missed = zone is not None and now is not None and sla_breached(timing, entry, now)
        expected = spec.expected_processors(game_date, today)
        done = state.done()
        satisfied = spec.satisfied(done)
        deadline = (
            (state.received_since + spec.max_wait).isoformat()
            if state.received_since is not None and spec.max_wait is not None
            else None
        )
        phases.append(
            {
                "phase": spec.phase,
                "name": spec.name,
                "expected": sorted(expected),
                "done": sorted(done),
                "missing": sorted(expected - satisfied),
                # Fallback groups met by a member other than their primary: primary -> member.
                "satisfied_by": satisfied_by(spec, state),
                "processors": {name: rec.status for name, rec in sorted(state.processors.items())},
                "first_completion_at": _iso(state.first_completion_at),
                "deadline": deadline,
                "trigger": state.trigger.model_dump(mode="json") if state.trigger else None,
                "rejected": gate_rejection(spec, state),
                "completed_at": _iso(entry.completed_at),
                "duration_seconds": entry.duration_seconds,
                "sla_due_at": _iso(entry.sla_due_at) if zone is not None else None,
                "sla_breached": missed or state.sla_breached_at is not None,
                "sla_breached_at": _iso(state.sla_breached_at),
                "held_by_phase": _held_by(registry, state, by_phase),
                "stalled_at": _iso(state.stall_alerted_at),
                # Automatic reruns per processor: attempts made, the next one scheduled, circuit.
                "reruns": {
                    name: {
                        "requested": rerun.requested,
                        "next_due_at": _iso(rerun.next_due_at),
                        "next_reason": rerun.next_reason,
                        "circuit_open": rerun.circuit_open,
                    }
                    for name, rerun in sorted(state.reruns.items())
                },
            }
        )
    return phases


def _held_by(registry: Registry, state: PhaseState, states: Mapping[int, PhaseState]) -> int | None:
    """The earlier phase that must fire before this one may (phaseflow.agents.phase_order); shown
    for a phase that has completions and has not fired."""
    if state.trigger is not None or not state.processors or not registry.phase(state.phase).gated:
        return None
    return blocking_phase(registry, state, states.get(state.phase - 1))


def date_latency(
    registry: Registry, states: PhaseStates, game_date: date, today: date
) -> dict[str, Any]:
    """End to end for ``game_date``: its first completion (phase 1's) to the last phase's
    completion (see :mod:`phaseflow.agents.phase_timing`)."""
    by_phase = date_states(registry, states, game_date)
    # The SLA is not part of this summary, so any zone will do.
    timing = date_timing(registry, by_phase, game_date, today=today, zone=ZoneInfo("UTC"))
    return {
        "started_at": _iso(timing.started_at),
        "completed_at": _iso(timing.completed_at),
        "end_to_end_seconds": timing.end_to_end_seconds,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
