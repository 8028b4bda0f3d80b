"""Records aiokafka fetched but Faust never delivered are fetched again
(streams/faust_fetch_gap.py): when, and to which offset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from phaseflow.streams.faust_fetch_gap import FetchGapRepair, FetchGapTracker, PartitionFetch

TP2 = TP("pf.phase-completions", 2)


def fetch(
    delivered: int | None, position: int | None, *, deliverable: bool = True
) -> PartitionFetch:
    return PartitionFetch(delivered_up_to=delivered, position=position, deliverable=deliverable)


def test_an_unchanged_gap_is_repaired_after_the_hold_from_the_first_undelivered_offset() -> None:
    tracker = FetchGapTracker(hold=5.0)
    assert tracker.seek_target(TP2, fetch(59, 66), now=100.0) is None
    assert tracker.seek_target(TP2, fetch(59, 66), now=104.9) is None
    assert tracker.seek_target(TP2, fetch(59, 66), now=105.0) == 59


def test_progress_restarts_the_hold() -> None:
    tracker = FetchGapTracker(hold=5.0)
    tracker.seek_target(TP2, fetch(59, 66), now=100.0)
    assert tracker.seek_target(TP2, fetch(61, 66), now=104.0) is None  # delivering: moving
    assert tracker.seek_target(TP2, fetch(61, 66), now=108.0) is None
    assert tracker.seek_target(TP2, fetch(61, 66), now=109.0) == 61


def test_one_offset_ahead_is_a_transaction_marker_not_a_gap() -> None:
    tracker = FetchGapTracker(hold=5.0)
    for now in (100.0, 110.0, 120.0):
        assert tracker.seek_target(TP2, fetch(65, 66), now=now) is None
        assert tracker.seek_target(TP2, fetch(66, 66), now=now) is None


def test_nothing_is_repaired_while_faust_may_not_deliver_or_does_not_know() -> None:
    tracker = FetchGapTracker(hold=5.0)
    for now in (100.0, 110.0):
        # paused for recovery, buffer full, flow suspended: Faust holds the records itself
        assert tracker.seek_target(TP2, fetch(59, 66, deliverable=False), now=now) is None
        assert tracker.seek_target(TP2, fetch(None, 66), now=now) is None
        assert tracker.seek_target(TP2, fetch(59, None), now=now) is None


def test_a_pause_in_between_restarts_the_hold() -> None:
    tracker = FetchGapTracker(hold=5.0)
    tracker.seek_target(TP2, fetch(59, 66), now=100.0)
    tracker.seek_target(TP2, fetch(59, 66, deliverable=False), now=103.0)
    assert tracker.seek_target(TP2, fetch(59, 66), now=106.0) is None
    assert tracker.seek_target(TP2, fetch(59, 66), now=111.0) == 59


def test_a_gap_back_unchanged_after_its_repair_is_not_repaired_again() -> None:
    # Re-read and still nothing delivered: aborted transactions and markers, not a loss.
    tracker = FetchGapTracker(hold=5.0)
    tracker.seek_target(TP2, fetch(59, 66), now=100.0)
    assert tracker.seek_target(TP2, fetch(59, 66), now=105.0) == 59
    for now in (106.0, 111.0, 120.0):
        assert tracker.seek_target(TP2, fetch(59, 66), now=now) is None
    # A new gap after progress is repaired again.
    tracker.seek_target(TP2, fetch(70, 80), now=121.0)
    assert tracker.seek_target(TP2, fetch(70, 80), now=126.0) == 70


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _AiokafkaConsumer:
    """What the repair reads of aiokafka's consumer: positions, log starts, seeks."""

    def __init__(self, positions: dict[TP, int], log_starts: dict[TP, int]) -> None:
        self.positions = positions
        self.log_starts = log_starts
        self.seeks: list[tuple[TP, int]] = []
        states = {tp: SimpleNamespace(_position=p) for tp, p in positions.items()}
        assignment = SimpleNamespace(tps=set(positions), state_value=states.__getitem__)
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))

    async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.log_starts[tp] for tp in tps}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


class _ConsumerThread:
    def __init__(self, client: _AiokafkaConsumer) -> None:
        self._consumer = client

    def _ensure_consumer(self) -> _AiokafkaConsumer:
        return self._consumer

    async def call_thread(self, fun: Callable[[], Awaitable[Any]]) -> Any:
        return await fun()


class _FaustApp:
    """A Faust app as the repair sees it (hashable: the record lock is kept per app)."""

    def __init__(self, consumer: SimpleNamespace) -> None:
        self.consumer = consumer
        self.in_recovery = False


def _faust_app(
    client: _AiokafkaConsumer, read: dict[TP, int], committed: dict[TP, int]
) -> _FaustApp:
    consumer = SimpleNamespace(
        _read_offset=dict(read),
        _committed_offset=dict(committed),
        _active_partitions=None,
        _paused_partitions=set(),
        _buffered_partitions=set(),
        flow_active=True,
        _thread=_ConsumerThread(client),
        assignment=lambda: set(client.positions),
    )
    return _FaustApp(consumer)


async def test_a_taken_over_partition_with_no_commit_is_read_again_from_its_log_start() -> None:
    # The survivor fetched partition 2 (66 records, nobody committed) and Faust delivered none.
    client = _AiokafkaConsumer({TP2: 66}, log_starts={TP2: 0})
    app = _faust_app(client, read={}, committed={})
    clock = _Clock()
    repair = FetchGapRepair(app, [TP2.topic], clock, hold=5.0)
    assert await repair.check() == 0
    clock.now = 105.0
    assert await repair.check() == 1
    assert client.seeks == [(TP2, 0)]
    assert app.consumer._read_offset[TP2] == 0


async def test_a_partition_with_nothing_fetched_past_its_start_is_left_alone() -> None:
    # Retention moved the log start to 40; position 40 or 41 (a marker) is all delivered.
    for position in (40, 41):
        client = _AiokafkaConsumer({TP2: position}, log_starts={TP2: 40})
        clock = _Clock()
        repair = FetchGapRepair(_faust_app(client, read={}, committed={}), [TP2.topic], clock)
        for now in (100.0, 110.0, 120.0):
            clock.now = now
            assert await repair.check() == 0
        assert client.seeks == []
