"""The readiness agent's batch table (agents/write_back.py): each key a batch writes is stored
once, with its last value, where its last write would have gone; a failed batch leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from phaseflow.agents.readiness_state import PhaseState
from phaseflow.agents.write_back import WriteBackTable
from phaseflow.models.codec import encode
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import GAME_DATE, ORIGIN, PHASE3, Harness


class CountingTable(dict[str, Any]):
    """A dict that records every write (a changelog record each in Faust) and its origin."""

    def __init__(self, current: list[str]) -> None:
        super().__init__()
        self.current = current
        self.writes: list[tuple[str, Any, str]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append((key, value, self.current[0]))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None, self.current[0]))
        super().__delitem__(key)


def table_with_origins() -> tuple[WriteBackTable, CountingTable, list[str]]:
    current = ["none"]
    backing = CountingTable(current)

    @contextmanager
    def within(origin: str) -> Iterator[None]:
        before, current[0] = current[0], origin
        try:
            yield
        finally:
            current[0] = before

    return WriteBackTable(backing, origin=lambda: current[0], within=within), backing, current


def test_a_batch_writes_each_key_once_with_its_last_value_and_origin() -> None:
    table, backing, current = table_with_origins()
    backing["kept"] = 1
    backing["gone"] = 2
    backing.writes.clear()
    current[0] = "event-a"
    table["x"] = 1
    current[0] = "event-b"
    table["x"] = 2
    table["y"] = 3
    del table["gone"]
    assert table["x"] == 2
    assert table.get("gone") is None
    assert "gone" not in table
    assert sorted(table) == ["kept", "x", "y"]
    assert len(table) == 3
    assert backing.writes == []  # nothing stored before the batch ends
    current[0] = "timer"
    assert table.flush() == 3
    assert backing.writes == [("x", 2, "event-b"), ("y", 3, "event-b"), ("gone", None, "event-b")]
    assert dict(backing) == {"kept": 1, "x": 2, "y": 3}
    assert table.flush() == 0


def test_a_failed_batch_leaves_the_table_as_it_was() -> None:
    table, backing, _ = table_with_origins()
    backing["x"] = 1
    table["x"] = 5
    table.pop("x")
    assert table.discard() == 1
    assert table["x"] == 1
    assert table.flush() == 0


async def test_a_batch_of_completions_writes_each_phase_state_once_and_decides_the_same() -> None:
    # The same records one at a time (stored after each) and as one batch: same triggers,
    # same final states; the batch writes each (date, phase) key once.
    results = []
    records: list[bytes] = []
    for batch in (False, True):
        current = ["event"]
        backing = CountingTable(current)
        table = WriteBackTable(backing)
        h = Harness(table=table)  # type: ignore[arg-type]
        await h.fire_upstream_of(3)
        table.flush()
        backing.writes.clear()
        if not records:
            events = [make_completion(name, GAME_DATE, 3, at=h.clock.now()) for name in PHASE3]
            records = [encode(event) for event in [*events, events[0]]]  # and one re-sent
        fired = []
        for record in records:
            fired += await h.processor.handle(record, ORIGIN)
            if not batch:
                table.flush()
        table.flush()
        fired += await h.advance(timedelta(seconds=1))
        table.flush()
        keys = [key for key, _, _ in backing.writes]
        # (phase 2's state holds fire_upstream_of's own random execution ids)
        state = {
            key: PhaseState.from_table(value)
            for key, value in backing.items()
            if not key.endswith(":2")
        }
        results.append(([(t.game_date, t.phase, t.reason) for t in fired], keys, state))
    (one_fired, one_keys, one_state), (batch_fired, batch_keys, batch_state) = results
    assert one_fired == batch_fired == [(GAME_DATE, 4, "ready")]
    assert one_state == batch_state
    assert len(batch_keys) == len(set(batch_keys)) < len(one_keys)


class FakeMessage:
    def __init__(self, partition: int, value: bytes) -> None:
        self.partition = partition
        self.value = value


class FakeEvent:
    def __init__(self, partition: int, value: bytes) -> None:
        self.message = FakeMessage(partition, value)


class NoTransactionApp:
    in_transaction = False


async def test_a_failed_batch_stores_nothing_and_a_good_one_each_key_once() -> None:
    from phaseflow.agents.readiness_agent import handle_batch

    table, backing, _ = table_with_origins()

    async def handle_record(message: FakeMessage) -> list[Any]:
        if message.value == b"bad":
            raise ValueError("handler failed")
        table[f"date-{message.partition}"] = message.value
        return []

    good = [FakeEvent(0, b"a"), FakeEvent(0, b"b"), FakeEvent(1, b"c")]
    with pytest.raises(ValueError, match="handler failed"):
        await handle_batch(
            NoTransactionApp(), [*good, FakeEvent(1, b"bad")], handle_record, [table]
        )
    assert backing.writes == []
    assert table.get("date-0") is None  # its records come again: nothing of them may remain

    assert await handle_batch(NoTransactionApp(), good, handle_record, [table]) == []
    assert [(key, value) for key, value, _ in backing.writes] == [
        ("date-0", b"b"),
        ("date-1", b"c"),
    ]
