"""The readiness table as the readiness processor sees it: decoded states, writes, and the
questions every step asks about the states it holds (today's date, phase order, what is missing).

The table is a plain mapping (a Faust table in the service, a dict in tests). The memory store
keeps the very dict a write put there, so a state this worker wrote is read back without
validating it again (the hottest step per event); values recovered from the changelog are parsed.
Through a ``WriteBackTable`` that encodes (the readiness agent's batches) the state itself is
written and serialized once per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from phaseflow.agents.phase_order import blocking_phase
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.stalls import registry_digest
from phaseflow.agents.write_back import WriteBackTable
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
        # table key -> (the value this store last wrote there, the state it holds); see _decoded.
        self._last_written: dict[str, tuple[Any, PhaseState]] = {}
        # States written under another registry are evaluated again (see phaseflow.agents.stalls).
        self.digest = registry_digest(registry)
        # A batch table stores states as they are (serialized once per batch, by _stored_form).
        self._deferred = isinstance(table, WriteBackTable)
        if isinstance(table, WriteBackTable):
            table.encode_with(self._stored_form)

    def today(self) -> date:
        """The pipeline's current date, in its own time zone (decides same-day mode)."""
        return self._clock.now().astimezone(self.zone).date()

    def state(self, game_date: date, phase: int) -> PhaseState | None:
        key = PhaseState.table_key(game_date, phase)
        return self._decoded(key, self._table.get(key))

    def states(self) -> Iterator[PhaseState]:
        """Every state this worker holds (its partitions of the table)."""
        for key, value in list(self._table.items()):
            if (state := self._decoded(key, value)) is not None:
                yield state

    def _decoded(self, key: str, stored: Any) -> PhaseState | None:
        """The state a table value holds. The memory store keeps the very value this
        processor wrote, so the model it was dumped from is reused instead of validated again
        (the hottest step per event); values recovered from the changelog are parsed."""
        if stored is None:
            return None
        if isinstance(stored, PhaseState):  # written in the batch in progress (see save)
            return stored
        cached = self._last_written.get(key)
        if cached is not None and cached[0] is stored:
            return cached[1]
        return PhaseState.from_table(stored)

    def _stored_form(self, state: PhaseState) -> bytes:
        """What the table holds for ``state``; remembered, so reading it back is free."""
        stored = state.to_table()
        self._last_written[state.key] = (stored, state)
        return stored

    def save(self, state: PhaseState, *, touch: bool = True) -> None:
        """Write ``state``; ``touch=False`` for bookkeeping (a stall alert, a re-evaluation
        stamp) that must not count as activity, so retention still sees the state idle."""
        updated_at = self._clock.now() if touch or state.updated_at is None else state.updated_at
        state = state.model_copy(update={"updated_at": updated_at, "registry_digest": self.digest})
        if self._deferred:
            self._table[state.key] = state  # serialized when its batch is stored
        else:
            self._table[state.key] = self._stored_form(state)

    def drop(self, key: str) -> None:
        """Remove the state stored under ``key`` (retention)."""
        self._table.pop(key, None)
        self._last_written.pop(key, None)

    def blocked_by(self, state: PhaseState) -> int | None:
        """The earlier phase that must fire first (phaseflow.agents.phase_order), or None."""
        predecessor = self.state(state.game_date, state.phase - 1)
        return blocking_phase(self._registry, state, predecessor)

    def missing(self, state: PhaseState) -> list[str]:
        spec = self._registry.phase(state.phase)
        expected = spec.expected_processors(state.game_date, self.today())
        return sorted(expected - spec.satisfied(state.done()))
