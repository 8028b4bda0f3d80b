"""Records aiokafka fetched but Faust never delivered are fetched again
(streams/faust_fetch_gap.py): when, and to which offset."""

from __future__ import annotations

from faust.types import TP

from phaseflow.streams.faust_fetch_gap import FetchGapTracker, PartitionFetch

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
