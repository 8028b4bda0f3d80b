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
    assert [s.rank for s in LagStatus] == [0, 1, 2, 3, 4, 5]
    assert sorted(LagStatus, key=lambda s: s.rank) == [
        LagStatus.OK,
        LagStatus.NO_COMMIT,
        LagStatus.WARN,
        LagStatus.REWIND,
        LagStatus.STALL,
        LagStatus.STOP,
    ]
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


STEPS_PER_WINDOW = int(WINDOW / STEP)  # 12: a window is covered by 13 samples


def test_warn_when_lag_grows_at_every_step_of_the_window() -> None:
    feed = Feed()
    for step in range(STEPS_PER_WINDOW):
        # lag 2, 3, 4, ...: growing, commits moving, but the window is not covered yet
        assert feed.add(10 + step, 12 + 2 * step) is LagStatus.OK
    assert feed.add(10 + STEPS_PER_WINDOW, 12 + 2 * STEPS_PER_WINDOW) is LagStatus.WARN
    assert "lag grew at every one of 12 steps from 2 to 14" in feed.reason()


def test_the_wobble_of_a_consumer_that_keeps_up_is_ok() -> None:
    # Measured: a consumer keeping up with a steady producer, sampled lag wobbling 1..9 (it
    # commits in batches). The old "never shrank over 3 samples" rule flagged it WARN in 32 of
    # 55 samples; rises of 3-5 samples inside the wobble must not count.
    wobble = [1, 4, 9, 2, 5, 8, 9, 3, 6, 7, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 6, 9, 1, 3, 8]
    feed = Feed()
    committed = 100
    for lag in wobble * 3:
        committed += 7  # commits move every sample
        assert feed.add(committed, committed + lag) is LagStatus.OK, feed.reason()


def test_flat_lag_with_moving_commits_is_ok() -> None:
    feed = Feed()
    for step in range(STEPS_PER_WINDOW * 2):
        feed.add(10 + step, 15 + step)  # lag 5 constant: keeping pace
    assert feed.status() is LagStatus.OK


def test_an_equal_step_breaks_the_trend_until_it_leaves_the_window() -> None:
    feed = Feed()
    lag = 2
    for step in range(STEPS_PER_WINDOW + 1):
        if step != 3:  # one step without growth (lag 5, 5)
            lag += 1
        feed.add(10 + step, 10 + step + lag)
    assert feed.status() is LagStatus.OK  # grew at 11 of 12 steps: not every step
    for step in range(3):
        lag += 1
        feed.add(30 + step, 30 + step + lag)
    # The flat step (samples 3 -> 4) has left the window: every remaining step grew.
    assert feed.status() is LagStatus.WARN


def test_growth_without_commits_moving_is_not_the_trend_warn() -> None:
    feed = Feed(LagPolicy(window=WINDOW, alert_messages=1000, stall_samples=100))
    for step in range(STEPS_PER_WINDOW + 1):
        feed.add(10, 12 + step)
    assert feed.status() is LagStatus.OK  # a stuck consumer is STALL/STOP's job


def test_trend_needs_lag_at_every_sample_of_the_window() -> None:
    feed = Feed()
    for step in range(STEPS_PER_WINDOW + 1):
        lag = 0 if step == 1 else step + 1
        feed.add(10 + step, 10 + step + lag)
    assert feed.status() is LagStatus.OK  # caught up once inside the window


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


# -- STOP from the group's commit timestamps (``committed_at``, read from __consumer_offsets) --


def test_stopped_consumer_is_stop_within_one_interval_of_the_threshold() -> None:
    # The consumer last committed at T0 and the records it left unread were written then too;
    # the monitor starts watching only at T0 + 30 s: no window of own observation is needed.
    history = PartitionHistory(POLICY)
    now = T0 + timedelta(seconds=30)
    statuses: list[tuple[float, LagStatus]] = []
    while now <= T0 + WINDOW + 2 * STEP:
        age = (now - T0).total_seconds()  # the unread records were written at the last commit
        history.add(LagSample(now, 10, 20, 10, age, committed_at=T0))
        statuses.append(((now - T0).total_seconds(), history.evaluate(now).status))
        now += STEP
    first_stop = next(seconds for seconds, status in statuses if status is LagStatus.STOP)
    assert WINDOW.total_seconds() < first_stop <= WINDOW.total_seconds() + STEP.total_seconds()
    assert all(status is not LagStatus.STOP for seconds, status in statuses if seconds <= 60)
    assert "no commit for 65.0 s" in history.evaluate(T0 + WINDOW + STEP).reason


def test_a_single_sample_with_an_old_commit_is_stop() -> None:
    # What ``phaseflow lag`` (one sample) sees for a group that died ten minutes ago.
    history = PartitionHistory(POLICY)
    now = T0 + timedelta(minutes=10)
    history.add(LagSample(now, 10, 20, 10, 600.0, committed_at=T0))
    assert history.evaluate(now).status is LagStatus.STOP


def test_old_commit_but_fresh_lag_is_not_stop() -> None:
    # Idle at lag 0 for an hour (no commits needed), then a record arrives: the clock starts
    # at that record, not at the hour-old commit.
    history = PartitionHistory(POLICY)
    now = T0 + timedelta(hours=1)
    history.add(LagSample(now, 10, 11, 1, 2.0, committed_at=T0))
    assert history.evaluate(now).status is LagStatus.OK
    later = now + WINDOW - timedelta(seconds=3)
    history.add(LagSample(later, 10, 11, 1, 2.0 + (later - now).total_seconds(), committed_at=T0))
    assert history.evaluate(later).status is not LagStatus.STOP
    assert history.evaluate(later + timedelta(seconds=2)).status is LagStatus.STOP


def test_recommitting_the_same_offset_is_stall_not_stop() -> None:
    # Burrow's split, now that commit times are known: alive (commits arrive) but not moving.
    feed = Feed()
    for _ in range(30):  # 150 s, far longer than the window
        at = feed.clock.now() + (STEP if feed.ticks else timedelta(0))
        feed.clock.set(at)
        feed.ticks += 1
        feed.history.add(LagSample(at, 10, 20, 10, 1.0, committed_at=at - timedelta(seconds=1)))
    assert feed.status() is LagStatus.STALL
    assert "unchanged" in feed.reason()


def test_without_commit_times_stop_falls_back_to_observation() -> None:
    history = PartitionHistory(POLICY)
    history.add(LagSample(T0, 10, 20, 10, 600.0))  # committed_at unknown
    assert history.evaluate(T0).status is LagStatus.OK  # one sample shows nothing stuck
