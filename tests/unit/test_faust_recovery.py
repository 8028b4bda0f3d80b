"""Table recovery asks the broker for changelog highwaters and sees a transactional changelog's
end quickly (streams/faust_recovery.py); the table manager starts without sleeping
(streams/faust_table_start.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables import recovery as faust_tables_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.faust_recovery import (
    QUICK_RECOVERY_WAIT_SECONDS,
    UNDELIVERED_HOLD_SECONDS,
    _highwaters_from_the_broker,
    _position_of_delivered_records,
    _record_returned,
    _returned,
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


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _FaustConsumer:
    """What the patches read of Faust's consumer: the last offset delivered per partition."""

    def __init__(self) -> None:
        self._read_offset: dict[str, int | None] = {}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_consumer_thread_notes_the_last_offset_it_returned() -> None:
    faust_consumer = _FaustConsumer()

    class Thread:
        consumer = faust_consumer

    async def fetch(_self: Any, *_args: Any, **_kwargs: Any) -> dict[str, list[_Record]]:
        return {"changelog-0": [_Record(3), _Record(7)], "changelog-1": []}

    noted = _record_returned(fetch)
    records = await noted(Thread(), None, timeout=1.0, max_records=10)
    assert list(records) == ["changelog-0", "changelog-1"]  # returned unchanged
    assert _returned(faust_consumer) == {"changelog-0": 7}


async def test_recovery_sees_the_position_of_delivered_records_only() -> None:
    """Highwater 10 (records up to 8, a commit marker at 9; aiokafka's position 10 once the
    consumer thread returned them): while Faust has delivered only up to 5, recovery is told 8,
    below the highwater, so it cannot skip records 6-8 for "markers only"; once they are
    delivered it is told 10."""
    clock = _Clock()
    consumer = _FaustConsumer()

    async def aiokafka_position(_self: Any, _tp: str) -> int:
        return 10

    position = _position_of_delivered_records(aiokafka_position, clock)
    assert await position(consumer, "changelog-0") == 10  # nothing returned: as it is
    _returned(consumer)["changelog-0"] = 8
    consumer._read_offset["changelog-0"] = None
    assert await position(consumer, "changelog-0") == 8  # none delivered yet
    consumer._read_offset["changelog-0"] = 5
    assert await position(consumer, "changelog-0") == 8
    consumer._read_offset["changelog-0"] = 8
    assert await position(consumer, "changelog-0") == 10


async def test_a_record_left_queued_by_a_timed_out_wait_holds_the_position() -> None:
    """The race a fresh-clone chaos run lost a prediction batch to: the record is delivered
    (Faust's read offset is at it) and put on the recovery queue in the loop turn in which the
    recovery's wait times out; the cancelled ``get`` leaves it queued. Until recovery takes it,
    the position stays below the highwater."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    consumer = _FaustConsumer()
    consumer.app = SimpleNamespace(tables=SimpleNamespace(_changelog_queue=queue))  # type: ignore[attr-defined]

    async def aiokafka_position(_self: Any, _tp: str) -> int:
        return 10

    position = _position_of_delivered_records(aiokafka_position, _Clock())
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(SimpleNamespace(message=SimpleNamespace(tp="changelog-0", offset=8)))
    waiting.cancel()  # the timeout, in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queue.qsize() == 1
    _returned(consumer)["changelog-0"] = 8
    consumer._read_offset["changelog-0"] = 8  # delivered
    assert await position(consumer, "changelog-0") == 8
    _returned(consumer)["changelog-1"] = 4
    consumer._read_offset["changelog-1"] = 4
    assert await position(consumer, "changelog-1") == 10  # only its own partition's records
    queue.get_nowait()  # taken by recovery
    assert await position(consumer, "changelog-0") == 10


async def test_a_hold_that_lasts_lets_recovery_end_as_before() -> None:
    """Records that never get delivered (nothing foreseen does that) hold the position back for
    UNDELIVERED_HOLD_SECONDS at most: recovery cannot hang on them."""
    clock = _Clock()
    consumer = _FaustConsumer()

    async def aiokafka_position(_self: Any, _tp: str) -> int:
        return 10

    position = _position_of_delivered_records(aiokafka_position, clock)
    _returned(consumer)["changelog-0"] = 8
    consumer._read_offset["changelog-0"] = 5
    assert await position(consumer, "changelog-0") == 8
    clock.now += UNDELIVERED_HOLD_SECONDS
    assert await position(consumer, "changelog-0") == 8
    clock.now += 0.1
    assert await position(consumer, "changelog-0") == 10
    # Records returned after those are held again (a later recovery of the partition): the
    # run-out hold does not carry over to them.
    _returned(consumer)["changelog-0"] = 9
    assert await position(consumer, "changelog-0") == 9
    clock.now += UNDELIVERED_HOLD_SECONDS + 0.1
    assert await position(consumer, "changelog-0") == 10


async def test_building_the_app_installs_both_halves_once(tmp_path: Path) -> None:
    from faust.transport import consumer as faust_consumer

    build_app(Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once"))
    build_app(Settings(topic_prefix="pf2", data_dir=tmp_path, processing_guarantee="exactly_once"))
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    consumer_class: Any = faust_consumer.ThreadDelegateConsumer
    assert thread_class._fetch_records.__name__ == "fetch_records_noted"
    assert not hasattr(thread_class._fetch_records.__wrapped__, "__wrapped__")
    assert consumer_class.position.__name__ == "position_of_delivered_records"
    assert not hasattr(consumer_class.position.__wrapped__, "__wrapped__")
