"""Table recovery asks the broker for changelog highwaters and sees a transactional changelog's
end quickly (streams/faust_recovery.py); the table manager starts without sleeping
(streams/faust_table_start.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.tables import recovery as faust_tables_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.faust_recovery import (
    QUICK_RECOVERY_WAIT_SECONDS,
    _highwaters_from_the_broker,
)


class FakeConsumer:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def last_stable_offset(self, _tp: Any) -> None:
        return None  # what aiokafka answers before the first fetch of a partition

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        self.asked.append(partitions)
        return dict.fromkeys(partitions, 49)


async def test_building_the_app_makes_recovery_read_highwaters_from_the_broker(
    tmp_path: Path,
) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once"))
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    assert thread_class._highwaters is _highwaters_from_the_broker
    consumer = FakeConsumer()

    class Thread:
        def _ensure_consumer(self) -> FakeConsumer:
            return consumer

    # In a transaction, stock faust-streaming would answer {tp: None} here.
    assert await _highwaters_from_the_broker(Thread(), ["changelog-0"]) == {"changelog-0": 49}
    assert consumer.asked == [["changelog-0"]]


async def test_recoverys_empty_wait_ends_long_before_fausts_five_seconds(tmp_path: Path) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once"))
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    # Faust's recovery loop: ``await asyncio.wait_for(changelog_queue.get(), timeout=5.0)``.
    async with asyncio.timeout(QUICK_RECOVERY_WAIT_SECONDS * 4) as outer:
        with pytest.raises(TimeoutError):
            await faust_tables_recovery.asyncio.wait_for(never, timeout=5.0)
    assert not outer.expired(), "recovery waited for Faust's 5 s"
    assert never.cancelled()
    # Everything else the module uses from asyncio is asyncio's own.
    assert faust_tables_recovery.asyncio.sleep is asyncio.sleep


async def test_the_table_manager_starts_its_tables_without_sleeping_first(tmp_path: Path) -> None:
    app: Any = build_app(Settings(topic_prefix="pf", data_dir=tmp_path)).app
    calls: list[str] = []

    async def update_channels() -> None:
        calls.append("channels")

    async def start_recovery() -> None:
        calls.append("recovery")

    async def no_sleep(_seconds: float) -> None:
        raise AssertionError("the table manager slept before starting its tables")

    manager = app.tables
    manager._update_channels = update_channels
    manager.sleep = no_sleep
    manager._recovery = type("Recovery", (), {"start": staticmethod(start_recovery)})()
    await manager.on_start()
    assert calls == ["channels", "recovery"]
