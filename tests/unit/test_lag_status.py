"""The pure lag evaluator: every status and its boundaries, on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.monitoring.lag_status import (
    LagEvaluator,
    LagPolicy,
    LagSample,
    LagStatus,
    PartitionHistory,
    worst,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
STEP = timedelta(seconds=5)
POLICY = LagPolicy(window=WINDOW, alert_messages=100, stall_samples=3, trend_samples=3)


class Feed:
    """A partition history fed one sample per STEP on a manual clock."""

    def __init__(self, policy: LagPolicy = POLICY) -> None:
        self.clock = ManualClock(T0)
        self.history = PartitionHistory(policy)
        self.ticks = 0

    def add(self, committed: int, end: int, lag: int | None = None) -> LagStatus:
        if self.ticks:
            self.clock.advance(STEP)
        self.ticks += 1
        lag = end - committed if lag is None else lag
        self.history.add(LagSample(self.clock.now(), committed, end, lag))
        return self.status()

    def status(self) -> LagStatus:
        return self.history.evaluate(self.clock.now()).status

    def reason(self) -> str:
        return self.history.evaluate(self.clock.now()).reason


def test_status_order_and_worst() -> None:
    assert [s.rank for s in LagStatus] == [0, 1, 2, 3, 4]
    assert worst([LagStatus.WARN, LagStatus.STOP, LagStatus.REWIND]) is LagStatus.STOP
    assert worst([]) is LagStatus.OK


def test_no_samples_is_ok() -> None:
    assert Feed().status() is LagStatus.OK


def test_caught_up_consumer_is_ok_however_long_it_idles() -> None:
    feed = Feed()
    for _ in range(100):  # 500 s, far longer than the window, no commit, lag 0
        assert feed.add(10, 10) is LagStatus.OK
    assert feed.reason() == "caught up"


def test_stall_needs_stall_samples_consecutive_stuck_samples() -> None:
    feed = Feed()
    feed.add(10, 10)
    assert feed.add(10, 15) is LagStatus.OK  # 1 stuck sample: maybe just not polled yet
    assert feed.add(10, 15) is LagStatus.OK  # 2
    assert feed.add(10, 16) is LagStatus.STALL  # 3 = stall_samples
    assert "committed offset 10 unchanged" in feed.reason()


def test_progress_resets_the_stall() -> None:
    feed = Feed()
    for _ in range(3):
        feed.add(10, 15)
    assert feed.status() is LagStatus.STALL
    assert feed.add(12, 15) is LagStatus.OK  # committed moved: a new run starts
    feed.add(12, 15)
    assert feed.add(12, 15) is LagStatus.STALL


def test_catching_up_resets_the_stall() -> None:
    feed = Feed()
    for _ in range(3):
        feed.add(10, 15)
    assert feed.add(15, 15) is LagStatus.OK
    assert feed.add(15, 16) is LagStatus.OK


def test_stop_is_a_stall_longer_than_the_window_boundary() -> None:
    feed = Feed()
    feed.add(10, 10)
    feed.add(10, 11)  # first stuck sample at T0 + 5 s
    stuck_since = feed.clock.now()
    feed.add(10, 11)
    feed.add(10, 11)
    assert feed.status() is LagStatus.STALL
    feed.clock.set(stuck_since + WINDOW)  # exactly the window: not yet "longer than"
    assert feed.status() is LagStatus.STALL
    feed.clock.set(stuck_since + WINDOW + timedelta(milliseconds=1))
    assert feed.status() is LagStatus.STOP
    assert "longer than the 60 s window" in feed.reason()


def test_stop_outlives_the_window_of_samples() -> None:
    feed = Feed()
    for _ in range(30):  # 150 s stuck, samples keep coming (and old ones leave the window)
        feed.add(10, 20)
    assert len(feed.history.samples) <= WINDOW / STEP + 1
    assert feed.status() is LagStatus.STOP


def test_idle_then_new_record_is_not_an_instant_stop() -> None:
    # The last commit is an hour old, but the consumer was caught up: the stuck clock starts at
    # the first lagging sample, not at the last commit.
    feed = Feed()
    feed.add(10, 10)
    feed.clock.advance(timedelta(hours=1))
    assert feed.add(10, 11) is LagStatus.OK
    feed.add(10, 11)
    assert feed.add(10, 11) is LagStatus.STALL


def test_rewind_and_its_expiry() -> None:
    feed = Feed()
    feed.add(50, 50)
    assert feed.add(20, 50) is LagStatus.REWIND
    assert "from 50 to 20" in feed.reason()
    rewound_at = feed.clock.now()
    feed.add(40, 50)
    assert feed.add(50, 50) is LagStatus.REWIND  # caught up again, the rewind is still in view
    feed.clock.set(rewound_at + WINDOW)  # the rewind's later sample leaves the window
    assert feed.status() is LagStatus.OK


def test_rewind_just_before_the_window_edge_is_still_seen() -> None:
    # The sample before the window is kept, so the pair (outside, inside) is compared.
    history = PartitionHistory(POLICY)
    history.add(LagSample(T0, 50, 50, 0))
    history.add(LagSample(T0 + WINDOW, 10, 50, 40))
    assert history.evaluate(T0 + WINDOW + timedelta(seconds=1)).status is LagStatus.REWIND


def test_stop_is_worse_than_rewind() -> None:
    feed = Feed()
    feed.add(50, 60)
    feed.add(20, 60)
    for _ in range(14):
        feed.add(20, 60)
    assert feed.status() is LagStatus.STOP


def test_warn_when_lag_grows_while_commits_move() -> None:
    feed = Feed()
    assert feed.add(10, 12) is LagStatus.OK
    assert feed.add(11, 15) is LagStatus.OK  # 2 samples: not a trend yet
    assert feed.add(12, 19) is LagStatus.WARN  # 3 = trend_samples, lag 2 -> 4 -> 7
    assert "lag grew from 2 to 7" in feed.reason()


def test_flat_lag_with_moving_commits_is_ok() -> None:
    feed = Feed()
    for step in range(6):
        feed.add(10 + step, 15 + step)  # lag 5 constant: keeping pace
    assert feed.status() is LagStatus.OK


def test_a_shrinking_step_breaks_the_trend() -> None:
    feed = Feed()
    feed.add(10, 12)  # lag 2
    feed.add(11, 15)  # 4
    feed.add(14, 17)  # 3: shrank
    assert feed.add(15, 20) is LagStatus.OK  # 2,4,3,5: not monotonic
    feed.add(16, 22)  # 6
    assert feed.status() is LagStatus.OK  # the run still contains the dip
    # The dip (at T0+10 s) leaves the window exactly when the next sample lands at T0+70 s.
    feed.clock.advance(WINDOW - STEP * 3)
    feed.add(17, 25)  # 8
    assert feed.status() is LagStatus.WARN  # 5 -> 6 -> 8 with commits moving


def test_trend_is_measured_only_since_lag_was_last_zero() -> None:
    feed = Feed()
    feed.add(10, 12)
    feed.add(11, 15)
    feed.add(15, 15)  # caught up
    feed.add(16, 17)
    assert feed.add(17, 20) is LagStatus.OK  # only 2 samples since caught up


def test_warn_at_the_message_threshold_boundary() -> None:
    feed = Feed()
    assert feed.add(0, 99) is LagStatus.OK
    assert feed.add(1, 101) is LagStatus.WARN  # lag 100 = threshold
    assert "threshold 100" in feed.reason()


def test_stall_is_worse_than_warn() -> None:
    feed = Feed()
    for _ in range(3):
        feed.add(0, 500)
    assert feed.status() is LagStatus.STALL


def test_samples_must_arrive_in_order() -> None:
    history = PartitionHistory(POLICY)
    history.add(LagSample(T0, 1, 1, 0))
    with pytest.raises(ValueError, match="older than the latest"):
        history.add(LagSample(T0 - STEP, 1, 1, 0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": timedelta(0)}, "window"),
        ({"alert_messages": 0}, "alert_messages"),
        ({"stall_samples": 1}, "stall_samples"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"window": WINDOW, "alert_messages": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        LagPolicy(**values)  # type: ignore[arg-type]


def test_evaluator_group_status_is_the_worst_partition_and_forgets_stale() -> None:
    clock = ManualClock(T0)
    evaluator = LagEvaluator(POLICY, clock)
    for _ in range(3):
        evaluator.observe(("g", "t", 0), LagSample(clock.now(), 5, 9, 4))  # stuck
        evaluator.observe(("g", "t", 1), LagSample(clock.now(), 9, 9, 0))
        evaluator.observe(("other", "t", 0), LagSample(clock.now(), 9, 9, 0))
        clock.advance(STEP)
    assert evaluator.group_status("g") is LagStatus.STALL
    assert evaluator.group_status("other") is LagStatus.OK
    assert evaluator.group_status("unknown") is LagStatus.OK
    assert evaluator.evaluate(("g", "t", 1)).status is LagStatus.OK
    clock.advance(WINDOW)
    evaluator.observe(("g", "t", 1), LagSample(clock.now(), 9, 9, 0))
    assert set(evaluator.forget_stale()) == {("g", "t", 0), ("other", "t", 0)}
    assert evaluator.keys() == [("g", "t", 1)]
