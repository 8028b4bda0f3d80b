"""The readiness table as the readiness processor sees it: decoded states, writes, and the
questions every step asks about the states it holds (today's date, phase order, what is missing).

The table is a plain mapping (a Faust table in the service, a dict in tests). The memory store
keeps the very dict a write put there, so a state this worker wrote is read back without
validating it again (the hottest step per event); values recovered from the changelog are parsed.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from phaseflow.agents.phase_order import blocking_phase
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.stalls import registry_digest
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.registry import Registry


class ReadinessStore:
    """Per (date, phase) states in ``table``, stamped with the registry they were written under."""

    def __init__(
        self, *, registry: Registry, table: MutableMapping[str, Any], clock: Clock, zone: ZoneInfo
    ) -> None:
        self._registry = registry
        self._table = table
        self._clock = clock
        self.zone = zone
        # id(stored dict) -> (that dict, the state it was dumped from); see _decoded.
        self._last_written: dict[int, tuple[Any, PhaseState]] = {}
        # States written under another registry are evaluated again (see phaseflow.agents.stalls).
        self.digest = registry_digest(registry)

    def today(self) -> date:
        """The pipeline's current date, in its own time zone (decides same-day mode)."""
        return self._clock.now().astimezone(self.zone).date()

    def state(self, game_date: date, phase: int) -> PhaseState | None:
        return self._decoded(self._table.get(PhaseState.table_key(game_date, phase)))

    def states(self) -> Iterator[PhaseState]:
        """Every state this worker holds (its partitions of the table)."""
        for value in list(self._table.values()):
            if (state := self._decoded(value)) is not None:
                yield state

    def _decoded(self, stored: Any) -> PhaseState | None:
        """The state a table value holds. The memory store keeps the very dict this processor
        wrote, so the model it was dumped from is reused instead of validated again (the
        hottest step per event); values recovered from the changelog are parsed."""
        if stored is None:
            return None
        cached = self._last_written.get(id(stored))
        if cached is not None and cached[0] is stored:
            return cached[1]
        return PhaseState.from_table(stored)

    def save(self, state: PhaseState, *, touch: bool = True) -> None:
        """Write ``state``; ``touch=False`` for bookkeeping (a stall alert, a re-evaluation
        stamp) that must not count as activity, so retention still sees the state idle."""
        updated_at = self._clock.now() if touch or state.updated_at is None else state.updated_at
        state = state.model_copy(update={"updated_at": updated_at, "registry_digest": self.digest})
        stored = state.to_table()
        previous = self._table.get(state.key)
        if previous is not None:
            self._last_written.pop(id(previous), None)
        self._last_written[id(stored)] = (stored, state)
        self._table[state.key] = stored

    def drop(self, key: str) -> None:
        """Remove the state stored under ``key`` (retention)."""
        stored = self._table.pop(key, None)
        self._last_written.pop(id(stored), None)

    def blocked_by(self, state: PhaseState) -> int | None:
        """The earlier phase that must fire first (phaseflow.agents.phase_order), or None."""
        predecessor = self.state(state.game_date, state.phase - 1)
        return blocking_phase(self._registry, state, predecessor)

    def missing(self, state: PhaseState) -> list[str]:
        spec = self._registry.phase(state.phase)
        expected = spec.expected_processors(state.game_date, self.today())
        return sorted(expected - spec.satisfied(state.done()))
