"""The service clocks: real, manual and accelerated (soak runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.clock import AcceleratedClock, SystemClock, clock_for


def test_accelerated_clock_runs_speed_times_faster_from_its_origin() -> None:
    ticks = [100.0]
    origin = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)
    clock = AcceleratedClock(720, origin=origin, monotonic=lambda: ticks[0])
    assert clock.now() == origin
    ticks[0] += 120  # two real minutes
    assert clock.now() == origin + timedelta(days=1)


def test_accelerated_clock_rejects_a_naive_origin_and_a_non_positive_speed() -> None:
    with pytest.raises(ValueError, match="aware"):
        AcceleratedClock(2, origin=datetime(2026, 3, 8))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="positive"):
        AcceleratedClock(0)


def test_the_service_clock_is_the_real_one_unless_sped_up() -> None:
    assert isinstance(clock_for(1.0), SystemClock)
    assert isinstance(clock_for(720.0), AcceleratedClock)
