"""The readiness timer's ticks: which (date, kind) ticks are due, at most one in flight each.

A tick goes through the readiness-ticks topic to the worker that owns its date's partition
(the same one as the date's completions), where the readiness processor handles it. A tick is
not sent again while an earlier one may still be in flight (``TICK_RESEND_AFTER``); handling it
clears that mark (``received``), so a tick put off by the completion backlog
(phaseflow.agents.backlog) is sent again on a later timer run.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from phaseflow.agents.cleanup import CleanupScan
from phaseflow.agents.readiness_state import PhaseState, ReadinessTick, TickKind
from phaseflow.agents.readiness_store import ReadinessStore
from phaseflow.agents.rearm import refire_due
from phaseflow.agents.retention import Retention
from phaseflow.agents.rules import evaluate_ready
from phaseflow.agents.sla import SlaWatch
from phaseflow.agents.stalls import is_declared, stall_due
from phaseflow.models.codec import encode
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.topics import TopicName

# A tick for a date is not re-sent while an earlier one may still be in flight.
TICK_RESEND_AFTER = timedelta(seconds=5)


class TickSchedule:
    """Asks every state in ``store`` what it is waiting for, and sends the ticks for it."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: ReadinessStore,
        clock: Clock,
        retention: Retention,
        sla: SlaWatch,
        cleanup: CleanupScan,
    ) -> None:
        self._registry = registry
        self._store = store
        self._clock = clock
        self._retention = retention
        self._sla = sla
        self._cleanup = cleanup
        self._ticks_sent: dict[tuple[date, str], datetime] = {}

    def received(self, tick: ReadinessTick) -> None:
        """``tick`` is being handled: the next one of its (date, kind) may go out."""
        self._ticks_sent.pop((tick.game_date, tick.kind), None)

    def due(self, orphans_reported: set[str]) -> list[ReadinessTick]:
        """Ticks the timer should send now, at most one per (date, kind) in flight.

        A state of an undeclared phase only ever asks for ``evaluate`` (reported once per start)
        and ``expire``: it has no rules to run, so it must not ask again and again.
        """
        now = self._clock.now()
        today = self._store.today()
        lookback = today - timedelta(days=self._registry.cleanup.lookback_days)
        wanted: dict[tuple[date, TickKind], None] = {}
        by_date: dict[date, dict[int, PhaseState]] = {}
        for state in self._store.states():
            day = state.game_date
            if self._retention.expired(state):
                wanted[(day, "expire")] = None
                continue
            if not is_declared(self._registry, state):
                if state.key not in orphans_reported:
                    wanted[(day, "evaluate")] = None
                continue
            by_date.setdefault(day, {})[state.phase] = state
            for kind in self._kinds_due(state, now, today, lookback):
                wanted[(day, kind)] = None
        for day, states in by_date.items():
            if self._sla.breaches(day, states, now):
                wanted[(day, "sla")] = None
        ticks = []
        for day, kind in wanted:
            sent = self._ticks_sent.get((day, kind))
            if sent is not None and now - sent < TICK_RESEND_AFTER:
                continue
            self._ticks_sent[(day, kind)] = now
            ticks.append(ReadinessTick(game_date=day, kind=kind, issued_at=now))
        return ticks

    def _kinds_due(
        self, state: PhaseState, now: datetime, today: date, lookback: date
    ) -> list[TickKind]:
        """What one declared, live state asks the timer for."""
        kinds: list[TickKind] = []
        expected = self._registry.phase(state.phase).expected_processors(state.game_date, today)
        if state.registry_digest != self._store.digest or self._ready_but_unfired(state, expected):
            kinds.append("evaluate")
        if (state.deadline_at is not None and state.deadline_at <= now) or refire_due(state, now):
            kinds.append("deadline")
        if state.due_reruns(now):
            kinds.append("rerun")
        if state.game_date >= lookback and self._cleanup.due(state, now):
            kinds.append("cleanup")
        if stall_due(self._registry, state, expected, now):
            kinds.append("stall")
        return kinds

    def _ready_but_unfired(self, state: PhaseState, expected: frozenset[str]) -> bool:
        """A free, gated phase whose ready rule holds but that has no trigger: its completion
        was recorded while the trigger was lost (a crash between the state write and the send,
        or a commit that split them), and a replayed completion is dropped as a duplicate. The
        next tick fires it instead of the stall alert hours later."""
        spec = self._registry.phase(state.phase)
        if state.trigger is not None or not spec.gated or state.gate_rejected_id is not None:
            return False
        if not self._registry.has_phase(state.phase + 1):
            return False
        if self._store.blocked_by(state) is not None:
            return False
        return evaluate_ready(spec, state, expected) is not None

    async def send_due(self, publisher: Publisher, orphans_reported: set[str]) -> int:
        """The timer's job: send every due tick to the partition that owns its date."""
        ticks = self.due(orphans_reported)
        for tick in ticks:
            await publisher.send(
                TopicName.READINESS_TICKS, tick.game_date.isoformat(), encode(tick)
            )
        return len(ticks)
