"""The per-system circuit breaker, driven by a manual clock (no sleeping)."""

from __future__ import annotations

from datetime import timedelta

from phaseflow.agents.predictions.breaker import CircuitBreaker
from phaseflow.streams.core.clock import ManualClock
from tests.fixtures.prediction_fakes import T0


def breaker(clock: ManualClock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("sys", threshold=threshold, cooldown=timedelta(minutes=5), clock=clock)


def test_opens_after_threshold_consecutive_failures_and_skips() -> None:
    clock = ManualClock(T0)
    b = breaker(clock)
    for _ in range(2):
        assert b.allow()
        assert not b.record_failure()
    assert b.state == "closed"
    assert b.allow()
    assert b.record_failure()  # the third one opens it
    assert b.state == "open"
    assert [b.allow() for _ in range(4)] == [False] * 4
    assert b.stats.skipped == 4
    assert b.stats.opened == 1


def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker(ManualClock(T0))
    for _ in range(2):
        b.allow()
        b.record_failure()
    b.allow()
    b.record_success()
    for _ in range(2):
        b.allow()
        b.record_failure()
    assert b.state == "closed"


def test_half_open_after_cooldown_lets_one_trial_through() -> None:
    clock = ManualClock(T0)
    b = breaker(clock, threshold=1)
    b.allow()
    b.record_failure()
    clock.advance(timedelta(minutes=4, seconds=59))
    assert not b.allow()
    clock.advance(timedelta(seconds=1))
    assert b.state == "half_open"
    assert b.allow()  # the trial
    assert not b.allow()  # only one at a time
    b.record_success()
    assert b.state == "closed"
    assert b.allow()


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = ManualClock(T0)
    b = breaker(clock, threshold=2)
    for _ in range(2):
        b.allow()
        b.record_failure()
    clock.advance(timedelta(minutes=5))
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    clock.advance(timedelta(minutes=4))
    assert not b.allow()
    clock.advance(timedelta(minutes=1))
    assert b.allow()
