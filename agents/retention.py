"""Retention: a (date, phase) state idle for ``retention_days`` is dropped from the table.

Idle time, not the game date's age, decides, so a backfill of an old date keeps its state (and its
trigger ledger) for as long as it is being worked on. A gated phase that never finished does not
vanish with an INFO line: it goes with a critical ``phase_stalled`` alert (phaseflow.agents.stalls).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from phaseflow.agents.outbox import Outbox
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.agents.stalls import is_declared, is_finished, raise_expired_unfinished
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.registry import Registry

log = logging.getLogger(__name__)


class Retention:
    """Decides which states in ``store`` expired, and drops them."""

    def __init__(self, *, registry: Registry, store: ReadinessStore, clock: Clock) -> None:
        self._registry = registry
        self._store = store
        self._clock = clock

    def expired(self, state: PhaseState) -> bool:
        """Idle for longer than the retention: nothing written for ``retention_days``.

        Idle time, not the game date's age, so a backfill of an old date keeps its state (and
        its trigger ledger) for as long as it is being worked on.
        """
        idle_since = state.updated_at or state.last_completion_at
        retention = timedelta(days=self._registry.retention_days)
        return idle_since is not None and self._clock.now() - idle_since > retention

    def expire(
        self, states: list[PhaseState], outbox: Outbox, *, orphans_reported: set[str]
    ) -> None:
        """Drop idle states; a gated phase that never finished goes with a critical alert."""
        for state in states:
            self._store.drop(state.key)
            orphans_reported.discard(state.key)
            days = self._registry.retention_days
            if not is_declared(self._registry, state):
                log.warning("readiness state %s of an undeclared phase expired", state.key)
                continue
            spec = self._registry.phase(state.phase)
            expected = spec.expected_processors(state.game_date, self._store.today())
            if spec.gated and not is_finished(self._registry, state, expected):
                raise_expired_unfinished(
                    self._registry,
                    state,
                    outbox,
                    missing=self._store.missing(state),
                    blocked_by=self._store.blocked_by(state),
                )
                log.warning(
                    "readiness state %s expired unfinished (idle for over %d days)",
                    state.key,
                    days,
                )
                continue
            log.info("readiness state %s expired (idle for over %d days)", state.key, days)
