"""REWIND from the commit log: a backwards commit in ``__consumer_offsets`` is REWIND for one
window even when the group replays so fast that no sample sees the lower committed offset."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.commit_times import CommitTimes
from phaseflow.streams.monitoring.lag_status import (
    LagPolicy,
    LagSample,
    LagStatus,
    PartitionHistory,
    Rewind,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=30)


def _key(group: str = "g", topic: str = "t", partition: int = 0) -> bytes:
    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    return struct.pack(">h", 1) + string(group) + string(topic) + struct.pack(">i", partition)


def _value(offset: int, at: datetime) -> bytes:
    # OffsetCommitValue v3: offset, leader epoch, metadata "", commit timestamp.
    return struct.pack(">hqih", 3, offset, 0, 0) + struct.pack(">q", int(at.timestamp() * 1000))


def test_the_commit_log_records_the_last_backwards_commit() -> None:
    times = CommitTimes(Settings())
    for seconds, offset in ((0, 10), (1, 20), (2, 5), (3, 8), (4, 30)):
        times.apply_record(_key(), _value(offset, T0 + timedelta(seconds=seconds)))
    assert times.rewind("g", "t", 0) == Rewind(T0 + timedelta(seconds=2), 20, 5)
    assert times.rewind("g", "t", 1) is None
    times.apply_record(_key(partition=1), _value(3, T0))
    times.apply_record(_key(partition=1), _value(3, T0 + timedelta(seconds=1)))  # same: no
    assert times.rewind("g", "t", 1) is None
    latest = times.latest("g", "t", 0)
    assert latest is not None
    assert latest.offset == 30


def test_a_logged_rewind_is_rewind_for_one_window_though_no_sample_saw_it() -> None:
    clock = ManualClock(T0)
    history = PartitionHistory(LagPolicy(window=WINDOW, alert_messages=1000))
    reset = Rewind(T0 + timedelta(seconds=12), 300, 0)

    def sample(committed: int, rewind: Rewind | None) -> LagStatus:
        history.add(LagSample(clock.now(), committed, committed + 5, 5, 0.5, clock.now(), rewind))
        status = history.evaluate(clock.now()).status
        clock.advance(timedelta(seconds=5))
        return status

    # Committed offsets only ever grow in the samples: 300, 305, 310 (replayed past 300).
    assert sample(300, None) is LagStatus.OK
    assert sample(305, None) is LagStatus.OK
    assert sample(310, reset) is LagStatus.REWIND
    reason = history.evaluate(clock.now()).reason
    assert reason == "committed offset went back from 300 to 0 at 09:00:12 UTC (commit log)"
    offset = 310
    while clock.now() <= reset.at + WINDOW:
        offset += 5
        assert sample(offset, reset) is LagStatus.REWIND
    assert sample(offset + 5, reset) is LagStatus.OK  # forgotten one window after the reset
