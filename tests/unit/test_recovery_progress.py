"""``/ready`` waits for table recovery of the current consumer generation
(streams/recovery_progress.py, streams/web/health.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from faust.tables.recovery import Recovery

from phaseflow.streams.recovery_progress import (
    RecoveryState,
    record_finished_recoveries,
    recording,
    recovery_state,
    when_tables_recovered,
)
from phaseflow.streams.web.health import ReadinessCheck


def state(**changes: object) -> RecoveryState:
    values: dict[str, object] = {
        "rebalancing": False,
        "requested": False,
        "restoring": False,
        "generation": 3,
        "recovered_generation": 3,
    }
    values.update(changes)
    return RecoveryState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"rebalancing": True}, "tables not recovered yet"),
        ({"restoring": True}, "restoring tables"),
        ({"requested": True}, "table recovery not finished"),
        # Faust's recovery.completed stays set after the first recovery: the generation tells.
        ({"recovered_generation": 2}, "table recovery not finished"),
        ({"recovered_generation": None}, "table recovery not finished"),
    ],
)
def test_tables_are_ready_only_when_recovered_for_the_current_generation(
    changes: dict[str, object], reason: str | None
) -> None:
    pending = state(**changes).pending()
    assert pending is None if reason is None else reason in (pending or "")


@dataclass
class FakeApp:
    consumer_generation_id: int = 0


@dataclass
class FakeRecovery:
    app: FakeApp
    ended: list[int] = field(default_factory=list)


async def test_a_finished_recovery_is_recorded_only_for_the_generation_still_current() -> None:
    async def end(self: FakeRecovery, generation_id: int = 0) -> None:
        self.ended.append(generation_id)
        # A rebalance during the last step: Faust abandons this generation's recovery.
        if generation_id == 5:
            self.app.consumer_generation_id = 6

    finished = recording(end)
    recovery = FakeRecovery(FakeApp(consumer_generation_id=4))
    await finished(recovery, 4)
    assert recovery._phaseflow_recovered_generation == 4  # type: ignore[attr-defined]
    recovery.app.consumer_generation_id = 5
    await finished(recovery, generation_id=5)
    assert recovery.ended == [4, 5]
    assert recovery._phaseflow_recovered_generation == 4  # type: ignore[attr-defined]


async def test_listeners_hear_of_each_recovery_of_the_current_generation() -> None:
    async def end(self: FakeRecovery, generation_id: int = 0) -> None:
        self.ended.append(generation_id)

    app = FakeApp(consumer_generation_id=7)
    heard: list[int] = []
    when_tables_recovered(app, heard.append)
    finished = recording(end)
    await finished(FakeRecovery(app), 6)  # abandoned: a newer generation is current
    await finished(FakeRecovery(app), 7)
    assert heard == [7]


def test_recording_is_installed_on_faust_once() -> None:
    record_finished_recoveries()
    first = (Recovery.on_recovery_completed, Recovery._resume_streams)
    record_finished_recoveries()
    assert (Recovery.on_recovery_completed, Recovery._resume_streams) == first
    assert getattr(Recovery.on_recovery_completed, "_phaseflow_records_generation", False)
    assert getattr(Recovery._resume_streams, "_phaseflow_records_generation", False)


class Event:
    def __init__(self, value: bool) -> None:
        self.value = value

    def is_set(self) -> bool:
        return self.value


@dataclass
class FakeFaustRecovery:
    in_recovery: bool = False
    signal_recovery_start: Event = field(default_factory=lambda: Event(value=False))


@dataclass
class FakeTables:
    recovery: FakeFaustRecovery


@dataclass
class FakeFaustApp:
    tables: FakeTables
    rebalancing: bool = False
    consumer_generation_id: int = 2


def test_recovery_state_reads_faust() -> None:
    recovery = FakeFaustRecovery(in_recovery=True)
    app = FakeFaustApp(FakeTables(recovery))
    assert recovery_state(app) == state(restoring=True, generation=2, recovered_generation=None)
    recovery._phaseflow_recovered_generation = 2  # type: ignore[attr-defined]
    recovery.in_recovery = False
    assert recovery_state(app).pending() is None


async def test_ready_is_false_while_tables_recover() -> None:
    async def probe() -> None:
        return None

    pending: list[str | None] = ["restoring tables from their changelogs"]
    check = ReadinessCheck(
        probe=probe,
        assigned_partitions=lambda: 4,
        recovery_pending=lambda: pending[0],
        lag=lambda: None,
        max_lag_messages=100,
    )
    report = await check.report()
    assert not report.ready
    assert report.reasons == ("restoring tables from their changelogs",)
    pending[0] = None
    assert (await check.report()).ready
