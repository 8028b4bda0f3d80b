"""When each phase of a game date started and completed, its latency and its SLA.

What operators see of it: docs/operations.md.

Pure functions of readiness state, so the status view, the metrics and the readiness agent all
agree, and tests need no clock but the one they pass in.

* A phase **starts** at its first completion for the date.
* It **completes** when its trigger fires (the next phase starts, ``ready`` or ``timeout``); a
  phase that fires nothing (the last phase, an ungated one) completes with the last of its
  expected processors once all of them are done.
* **End to end** runs from the date's first completion (phase 1's, whenever phase 1 reports) to
  the last phase's completion.
* An **SLA** is a local time (pipeline time zone) on the game date. It is breached when the phase
  is not complete by then, but only for a date whose run started before it: a backfill or an
  overnight re-run of an old date was never going to meet the morning's deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from phaseflow.agents.fallbacks import counted
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.streams.core.registry import PhaseSpec, Registry


@dataclass(frozen=True)
class PhaseTiming:
    phase: int
    started_at: datetime | None
    completed_at: datetime | None
    sla_due_at: datetime | None
    #: When the readiness agent raised this phase's sla_breach alert.
    sla_breached_at: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        return _seconds_between(self.started_at, self.completed_at)


@dataclass(frozen=True)
class DateTiming:
    game_date: date
    phases: tuple[PhaseTiming, ...]

    @property
    def started_at(self) -> datetime | None:
        """The first completion of any phase of the date."""
        return min((p.started_at for p in self.phases if p.started_at), default=None)

    @property
    def completed_at(self) -> datetime | None:
        """The last phase's completion (None while it is not complete)."""
        return self.phases[-1].completed_at if self.phases else None

    @property
    def end_to_end_seconds(self) -> float | None:
        """The date's first completion to the last phase's completion."""
        return _seconds_between(self.started_at, self.completed_at)


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def phase_completed_at(
    spec: PhaseSpec, state: PhaseState, expected: frozenset[str]
) -> datetime | None:
    """When the phase completed (see the module docstring), or None."""
    if state.trigger is not None:
        return state.trigger.triggered_at
    if not expected:
        return None
    completed, missing = counted(spec, state, expected)
    if missing:
        return None
    return max(state.processors[name].last_completed_at for name in completed)


def sla_due_at(spec: PhaseSpec, game_date: date, zone: ZoneInfo) -> datetime | None:
    """The phase's SLA as an instant (UTC), or None if it has none.

    A local time that does not exist (skipped by a spring-forward) is read with the offset in
    force before the change, so it lands an hour later on the wall clock: still on the date.
    """
    if spec.sla is None:
        return None
    return datetime.combine(game_date, spec.sla, tzinfo=zone).astimezone(UTC)


def date_timing(
    registry: Registry,
    states: Mapping[int, PhaseState],
    game_date: date,
    *,
    today: date,
    zone: ZoneInfo,
) -> DateTiming:
    """Timing of every registry phase of ``game_date`` from its states (phase -> state)."""
    phases = []
    for spec in sorted(registry.phases, key=lambda s: s.phase):
        state = states.get(spec.phase) or PhaseState(game_date=game_date, phase=spec.phase)
        expected = spec.expected_processors(game_date, today)
        phases.append(
            PhaseTiming(
                phase=spec.phase,
                started_at=state.first_completion_at,
                completed_at=phase_completed_at(spec, state, expected),
                sla_due_at=sla_due_at(spec, game_date, zone),
                sla_breached_at=state.sla_breached_at,
            )
        )
    return DateTiming(game_date=game_date, phases=tuple(phases))


def sla_breached(timing: DateTiming, phase: PhaseTiming, now: datetime) -> bool:
    """Whether ``phase`` of the date has missed its SLA by ``now`` (see the module docstring)."""
    due = phase.sla_due_at
    started = timing.started_at
    if due is None or started is None or started > due or now < due:
        return False
    return phase.completed_at is None or phase.completed_at > due
