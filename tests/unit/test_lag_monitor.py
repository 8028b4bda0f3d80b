"""LagMonitor without a broker: alerts on transitions only, retries, watchdog, lifecycle, table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from phaseflow.models.events import Alert
from phaseflow.streams.cli import _parser
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag import LagMonitor, watched_groups
from phaseflow.streams.monitoring.lag_cli import format_table
from phaseflow.streams.monitoring.lag_sampler import PartitionLag
from phaseflow.streams.monitoring.lag_status import LagStatus

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=5)
GROUP = "phaseflow"


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "app_id": GROUP,
        "lag_window_seconds": 30.0,
        "lag_sample_interval_seconds": 5.0,
        "lag_alert_messages": 1000,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


class FakeSource:
    """Returns the offsets the test sets, stamped with the manual clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.offsets: dict[tuple[str, str, int], tuple[int, int]] = {}
        self.starts = 0
        self.stops = 0
        self.fail_with: Exception | None = None

    async def start(self) -> None:
        self.starts += 1

    async def stop(self) -> None:
        self.stops += 1

    async def sample(self, groups: Sequence[str]) -> list[PartitionLag]:
        if self.fail_with is not None:
            raise self.fail_with
        rows = []
        for (group, topic, partition), (committed, end) in sorted(self.offsets.items()):
            if group in groups:
                lag = end - committed
                rows.append(
                    PartitionLag(
                        group, topic, partition, committed, end, lag, lag, 1.5, self.clock.now()
                    )
                )
        return rows


async def _poll(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, **monitor_options: object) -> None:
        self.clock = ManualClock(T0)
        self.source = FakeSource(self.clock)
        self.alerts: list[Alert] = []
        self.restarts = 0
        self.publish_fails = False
        monitor_options.setdefault("groups", [GROUP])  # watched_groups() has its own test
        self.monitor = LagMonitor(
            settings(),
            publish=self.publish,
            on_own_stall=self.restart,
            clock=self.clock,
            source=self.source,
            **monitor_options,  # type: ignore[arg-type]
        )

    async def publish(self, alert: Alert) -> None:
        if self.publish_fails:
            raise ConnectionError("broker down")
        self.alerts.append(alert)

    async def restart(self) -> None:
        self.restarts += 1

    async def tick(self, committed: int, end: int, group: str = GROUP) -> LagStatus:
        self.source.offsets[(group, "events", 0)] = (committed, end)
        await self.monitor.sample_once()
        status = self.monitor.group_status(group)
        self.clock.advance(STEP)
        return status


async def test_alerts_only_on_transitions() -> None:
    h = Harness()
    await h.monitor.start(background=False)
    try:
        assert await h.tick(10, 10) is LagStatus.OK
        for _ in range(2):
            await h.tick(10, 12)
        assert h.alerts == []
        assert await h.tick(10, 12) is LagStatus.STALL
        assert len(h.alerts) == 1
        for _ in range(3):  # still STALL: no new alert per sample
            assert await h.tick(10, 12) is LagStatus.STALL
        assert len(h.alerts) == 1
        while (status := await h.tick(10, 12)) is LagStatus.STALL:
            pass
        assert status is LagStatus.STOP
        assert [a.details["status"] for a in h.alerts] == ["STALL", "STOP"]
        assert await h.tick(12, 12) is LagStatus.OK  # recovery: logged, not alerted
        assert len(h.alerts) == 2
        for _ in range(3):
            await h.tick(12, 13)
        assert [a.details["status"] for a in h.alerts] == ["STALL", "STOP", "STALL"]
    finally:
        await h.monitor.stop()

    stall = h.alerts[0]
    assert stall.kind == "consumer_lag"
    assert stall.key == f"consumer_lag:{GROUP}"
    assert stall.severity == "critical"
    assert stall.details["previous"] == "OK"
    assert "events[0] STALL" in stall.message
    partitions = stall.details["partitions"]
    assert isinstance(partitions, list)
    assert partitions[0] == {
        "topic": "events",
        "partition": 0,
        "status": "STALL",
        "committed": 10,
        "end": 12,
        "lag": 2,
        "raw_lag": 2,
        "lag_seconds": 1.5,
        "reason": partitions[0]["reason"],  # type: ignore[index]
    }


async def test_warn_and_rewind_alerts_are_warnings() -> None:
    h = Harness()
    await h.tick(0, 1500)
    assert h.alerts[-1].details["status"] == "WARN"
    assert h.alerts[-1].severity == "warning"
    await h.tick(1500, 1500)
    await h.tick(100, 100)
    assert h.alerts[-1].details["status"] == "REWIND"
    assert h.alerts[-1].severity == "warning"


async def test_failed_publish_is_retried_next_round() -> None:
    h = Harness()
    h.publish_fails = True
    for _ in range(3):
        await h.tick(10, 12)
    assert h.monitor.group_status(GROUP) is LagStatus.STALL
    assert h.alerts == []
    h.publish_fails = False
    await h.tick(10, 12)
    assert [a.details["status"] for a in h.alerts] == ["STALL"]


async def test_watchdog_restarts_own_group_after_threshold_only() -> None:
    h = Harness(own_stall_after=timedelta(seconds=20))
    for _ in range(3):  # STALL from the third sample on (T0 + 10 s)
        await h.tick(10, 12)
    assert h.restarts == 0
    for _ in range(4):  # 15, 20, 25, 30 s: 20 s after STALL started is T0 + 30 s
        await h.tick(10, 12)
    assert h.restarts == 1
    for _ in range(3):  # the clock restarted: the next call needs another 20 s
        await h.tick(10, 12)
    assert h.restarts == 1
    await h.tick(10, 12)
    assert h.restarts == 2
    await h.tick(12, 12)  # caught up: the watchdog disarms
    for _ in range(6):
        await h.tick(12, 12)
    assert h.restarts == 2


async def test_watchdog_ignores_other_groups() -> None:
    h = Harness(groups=[GROUP, "other"], own_stall_after=timedelta(seconds=5))
    for _ in range(10):
        await h.tick(1, 5, group="other")
    assert h.monitor.group_status("other") is LagStatus.STOP
    assert h.restarts == 0


async def test_rows_for_metrics() -> None:
    h = Harness()
    await h.tick(3, 7)
    [row] = h.monitor.rows()
    assert (row.group, row.topic, row.partition) == (GROUP, "events", 0)
    assert (row.committed, row.end, row.lag, row.raw_lag, row.lag_seconds) == (3, 7, 4, 4, 1.5)
    assert row.status is LagStatus.OK
    assert row.sampled_at == T0
    assert h.monitor.group_statuses() == {GROUP: LagStatus.OK}


async def test_lifecycle_background_loop_survives_errors_and_stop_is_idempotent() -> None:
    h = Harness(interval=0.01)
    async with h.monitor as monitor:
        await monitor.start()  # idempotent
        await _poll(lambda: monitor.rounds >= 3)
        h.source.fail_with = ConnectionError("broker down")
        await _poll(lambda: monitor.last_error is not None)
        assert monitor.last_error == "ConnectionError('broker down')"
        h.source.fail_with = None
        await _poll(lambda: monitor.last_error is None)
    await h.monitor.stop()
    assert (h.source.starts, h.source.stops) == (1, 1)


async def test_partitions_not_sampled_for_a_window_are_forgotten() -> None:
    h = Harness()
    await h.tick(1, 1)
    del h.source.offsets[(GROUP, "events", 0)]
    h.clock.advance(timedelta(seconds=30))
    await h.monitor.sample_once()
    assert h.monitor.rows() == []


def test_lag_groups_setting_and_watched_groups() -> None:
    parsed = Settings.model_validate({"lag_groups": " a, b,,a ", "app_id": "me"})
    assert parsed.lag_groups == ("a", "b", "a")
    assert watched_groups(parsed) == ["me", "me.prediction-workers", "a", "b"]
    assert Settings().lag_groups == ()


def test_lag_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_LAG_GROUPS", "x,y")
    monkeypatch.setenv("PHASEFLOW_LAG_WINDOW_SECONDS", "7.5")
    loaded = Settings()
    assert loaded.lag_groups == ("x", "y")
    assert loaded.lag_window_seconds == 7.5


def test_cli_lag_arguments() -> None:
    args = _parser().parse_args(["lag", "--group", "a", "--group", "b", "--watch"])
    assert (args.command, args.group, args.watch, args.interval) == ("lag", ["a", "b"], True, None)
    assert _parser().parse_args(["lag"]).group == []


async def test_format_table() -> None:
    h = Harness(groups=[GROUP, "idle"])
    for _ in range(3):
        await h.tick(10, 12)
    text = format_table(h.monitor.rows(), h.monitor.groups)
    lines = text.splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "LAG_S",
        "STATUS",
    ]
    assert lines[1].split() == [GROUP, "events", "0", "10", "12", "2", "1.5", "STALL"]
    assert lines[2].startswith(f"group {GROUP}: STALL, lag 2 messages; events[0]: 2 behind")
    assert lines[3] == "group idle: no committed offsets"
