"""The cleanup scan: processors still missing in started phases get a rerun (the job that used
to be a cron); an outage-sized gap raises one alert instead of a rerun storm.

The readiness timer asks ``due`` per state (every ``[cleanup] interval`` since the phase
started or was last scanned, for dates within ``lookback_days``); a ``cleanup`` tick then
``run``s the scan over the date's states. Reruns go through the one budget
(phaseflow.agents.rerun_dispatch).
"""

from __future__ import annotations

from datetime import date, datetime

from phaseflow.agents.outbox import Outbox
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.agents.rerun_dispatch import RerunDispatch
from phaseflow.streams.core.registry import Registry


class CleanupScan:
    """Scans the started phases of a date held in ``store`` for missing processors."""

    def __init__(self, *, registry: Registry, store: ReadinessStore, reruns: RerunDispatch) -> None:
        self._registry = registry
        self._store = store
        self._reruns = reruns

    def due(self, state: PhaseState, now: datetime) -> bool:
        interval = self._registry.cleanup.interval
        since = state.cleanup_at or state.started_at or state.received_since
        return since is not None and now - since >= interval

    def run(self, game_date: date, states: list[PhaseState], outbox: Outbox) -> list[PhaseState]:
        """Rerun processors still missing in started phases (the job that used to be a cron);
        an outage-sized gap raises one alert instead of a rerun storm."""
        by_phase = {state.phase: state for state in states}
        # A phase whose predecessor fired has started even if none of its processors reported.
        for state in list(by_phase.values()):
            nxt = state.phase + 1
            if state.trigger is not None and nxt not in by_phase and self._registry.has_phase(nxt):
                by_phase[nxt] = PhaseState(
                    game_date=game_date, phase=nxt, started_at=state.trigger.triggered_at
                )
        now, today, interval = outbox.now, self._store.today(), self._registry.cleanup.interval
        missing: list[tuple[PhaseState, str]] = []
        expected_total = 0
        for state in by_phase.values():
            spec = self._registry.phase(state.phase)
            started = state.started_at or state.received_since
            if not spec.gated or started is None or now - started < interval:
                continue
            if state.trigger is None and state.deadline_at is not None:
                continue  # its tier/max_wait deadline handles what is missing, once
            if state.trigger is None and self._store.blocked_by(state) is not None:
                continue  # held by phase order: its inputs are not there yet
            expected = spec.expected_processors(game_date, today)
            expected_total += len(expected)
            missing += [(state, name) for name in sorted(expected - spec.satisfied(state.done()))]
        guard = self._registry.cleanup
        share = 100.0 * len(missing) / expected_total if expected_total else 0.0
        if len(missing) > guard.storm_min_missing and share > guard.storm_max_missing_pct:
            outbox.alert(
                "phase_timeout",
                f"{game_date.isoformat()}:cleanup",
                f"cleanup found {len(missing)} of {expected_total} processors missing for "
                f"{game_date} ({share:.0f}%): looks like an outage, no reruns requested",
                severity="critical",
                details={"missing": [f"{s.phase}:{name}" for s, name in missing]},
            )
        else:
            for state, name in missing:
                current = by_phase[state.phase]
                rerun = current.reruns.get(name)
                if rerun is not None and (
                    rerun.next_due_at is not None
                    or (rerun.last_requested_at and now - rerun.last_requested_at < interval)
                ):
                    continue  # one is scheduled, or one was requested recently
                by_phase[state.phase] = self._reruns.schedule(current, name, "cleanup", outbox)
        return [state.model_copy(update={"cleanup_at": now}) for state in by_phase.values()]
