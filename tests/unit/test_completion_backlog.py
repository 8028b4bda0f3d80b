"""Ticks wait for completions already on the broker: CompletionBacklog on the virtual clock."""

from __future__ import annotations

from datetime import timedelta

from phaseflow.agents.backlog import BACKLOG_HOLD_LIMIT, CompletionBacklog
from phaseflow.streams.core.clock import ManualClock
from tests.fixtures.readiness_harness import NOW

SECOND = timedelta(seconds=1)


def backlog_with(ends: dict[int, int | None]) -> tuple[CompletionBacklog, ManualClock]:
    clock = ManualClock(NOW)
    return CompletionBacklog(ends.get, clock), clock


def test_a_tick_waits_until_the_completions_before_it_are_processed() -> None:
    ends: dict[int, int | None] = {0: 5}
    backlog, _ = backlog_with(ends)
    backlog.processed(0, 0)
    assert backlog.holds(0)
    for offset in range(1, 5):
        backlog.processed(0, offset)
    assert not backlog.holds(0)


def test_after_a_restart_the_tick_waits_for_the_backlog_in_the_same_fetch() -> None:
    backlog, _ = backlog_with({1: 12})
    assert backlog.holds(1)  # nothing processed since the start: unknown
    backlog.processed(1, 11)
    assert not backlog.holds(1)


def test_an_unknown_end_holds_and_an_empty_partition_does_not() -> None:
    backlog, _ = backlog_with({0: None, 1: 0})
    assert backlog.holds(0)
    assert not backlog.holds(1)


def test_an_end_never_reached_is_accepted_after_the_hold_limit() -> None:
    # A transaction marker ends the log: the last record is at 9, the end is 11.
    ends: dict[int, int | None] = {0: 11}
    backlog, clock = backlog_with(ends)
    backlog.processed(0, 9)
    assert backlog.holds(0)
    clock.advance(BACKLOG_HOLD_LIMIT - SECOND)
    assert backlog.holds(0)
    clock.advance(SECOND)
    assert not backlog.holds(0)
    assert not backlog.holds(0)  # that end is not waited for again
    ends[0] = 13  # a new record (and its marker)
    assert backlog.holds(0)


def test_the_hold_restarts_when_new_records_arrive() -> None:
    ends: dict[int, int | None] = {0: 3}
    backlog, clock = backlog_with(ends)
    backlog.processed(0, 0)
    assert backlog.holds(0)
    clock.advance(BACKLOG_HOLD_LIMIT - SECOND)
    ends[0] = 6  # still arriving: the backlog is real
    assert backlog.holds(0)
    clock.advance(2 * SECOND)
    assert backlog.holds(0)
    backlog.processed(0, 5)
    assert not backlog.holds(0)
