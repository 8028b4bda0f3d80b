"""SLA breaches: one ``sla_breach`` alert per (date, phase) not complete by its SLA.

When a phase is due and when it counts as breached is decided by phaseflow.agents.phase_timing
(pure); this module finds the breaches of the dates the readiness store holds, raises the alert
and records it in the phase's state in the same step, so it is raised once.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from phaseflow.agents.outbox import Outbox
from phaseflow.agents.phase_timing import PhaseTiming, date_timing, sla_breached, sla_due_at
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.streams.core.registry import Registry

log = logging.getLogger(__name__)


class SlaWatch:
    """Finds and alerts the SLA breaches of the states in ``store``."""

    def __init__(self, *, registry: Registry, store: ReadinessStore) -> None:
        self._registry = registry
        self._store = store

    def breaches(
        self, game_date: date, states: dict[int, PhaseState], now: datetime
    ) -> list[tuple[PhaseState, PhaseTiming]]:
        """Phases of a recent date past their SLA and not yet alerted; a phase never seen gets a
        fresh state to record its breach in."""
        if game_date < self._store.today() - timedelta(days=self._registry.cleanup.lookback_days):
            return []
        if not self._any_sla_passed(game_date, now):
            return []  # nothing can be breached yet; the timer asks every date every second
        timing = date_timing(
            self._registry, states, game_date, today=self._store.today(), zone=self._store.zone
        )
        breaches = []
        for phase in timing.phases:
            state = states.get(phase.phase) or PhaseState(game_date=game_date, phase=phase.phase)
            if state.sla_breached_at is None and sla_breached(timing, phase, now):
                breaches.append((state, phase))
        return breaches

    def _any_sla_passed(self, game_date: date, now: datetime) -> bool:
        """Whether the SLA of some phase of ``game_date`` is due by ``now`` (a phase breaches
        only once its SLA is due: phaseflow.agents.phase_timing.sla_breached)."""
        zone = self._store.zone
        for spec in self._registry.phases:
            due = sla_due_at(spec, game_date, zone)
            if due is not None and due <= now:
                return True
        return False

    def raise_breaches(self, game_date: date, outbox: Outbox) -> None:
        """One sla_breach alert per (date, phase): the state records it, in the same step."""
        states = {
            spec.phase: state
            for spec in self._registry.phases
            if (state := self._store.state(game_date, spec.phase)) is not None
        }
        for state, phase in self.breaches(game_date, states, outbox.now):
            spec = self._registry.phase(phase.phase)
            due = phase.sla_due_at
            assert due is not None  # noqa: S101 -- only phases with an SLA can breach it
            outbox.alert(
                "sla_breach",
                f"{game_date.isoformat()}:phase_{phase.phase}",
                f"phase {phase.phase} ({spec.name}) of {game_date} was not complete by its SLA "
                f"of {spec.sla} {self._store.zone.key}",
                details={
                    "sla": str(spec.sla),
                    "timezone": self._store.zone.key,
                    "due_at": due.isoformat(),
                    "completed_at": _iso(phase.completed_at),
                },
            )
            log.warning("SLA of phase %s of %s breached", phase.phase, game_date)
            self._store.save(state.model_copy(update={"sla_breached_at": outbox.now}))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
