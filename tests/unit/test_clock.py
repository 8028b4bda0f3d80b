"""The service clocks: real, manual and accelerated (soak runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phaseflow.streams.app import build_app
from phaseflow.streams.core.clock import AcceleratedClock, ManualClock, SystemClock, clock_for
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.install import monitoring_clock


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


def test_monitoring_measures_wall_time_even_when_the_pipeline_clock_is_sped_up(
    tmp_path: Path,
) -> None:
    manual = ManualClock(datetime(2026, 3, 8, 6, 0, tzinfo=UTC))
    normal = build_app(Settings(topic_prefix="pf", data_dir=tmp_path / "a"), clock=manual)
    assert monitoring_clock(normal) is manual  # tests drive lag windows with a manual clock
    sped_up = build_app(Settings(topic_prefix="pf", data_dir=tmp_path / "b", clock_speed=720))
    assert isinstance(sped_up.clock, AcceleratedClock)
    # Lag seconds and letter ages compare with record timestamps: wall time.
    assert isinstance(monitoring_clock(sped_up), SystemClock)
