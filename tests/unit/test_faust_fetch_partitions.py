"""A fetch takes only the partitions Faust asked for, even when Faust's active set changes while
the fetch waits (streams/faust_fetch_partitions.py): a real aiokafka Fetcher, Faust's own
consumer-thread ``getmany``, no broker."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.fetcher import FetchResult
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from phaseflow.streams.faust_fetch_partitions import fetch_only_active_partitions
from tests.unit.test_faust_fetch_hold import CHANGELOG, STREAM, idle_fetcher

WAIT = 0.2  # the fetch's own wait for records


class Batch:
    """Fetched records of one partition, as aiokafka's PartitionRecords hands them over."""

    def __init__(self, offsets: list[int]) -> None:
        self._offsets = offsets
        self.next_fetch_offset = offsets[0]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if not self._offsets:
            raise StopIteration
        offset = self._offsets.pop(0)
        self.next_fetch_offset = offset + 1
        return SimpleNamespace(offset=offset)


async def consumer_thread() -> tuple[Any, Any, Any]:
    """Faust's consumer thread over an aiokafka consumer whose Fetcher has STREAM and CHANGELOG
    assigned at offset 1 and nothing buffered; calls into the thread run on this loop."""
    fetcher, assignment = await idle_fetcher()
    fetcher._closed = False  # its background routine is stopped; fetched_records still works
    for tp in (STREAM, CHANGELOG):
        assignment.state_value(tp).seek(1)
    client = SimpleNamespace(_fetcher=fetcher, _max_poll_records=500, _closed=False)

    async def call_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    thread = SimpleNamespace(
        consumer=SimpleNamespace(flow_active=True),
        _ensure_consumer=lambda: client,
        call_thread=call_thread,
    )
    thread._fetch_records = functools.partial(AIOKafkaConsumerThread._fetch_records, thread)
    return thread, fetcher, assignment


def fetch_waiting(fetcher: Any) -> asyncio.Event:
    """Set once a fetch waits for records (aiokafka creates its waiter then)."""
    waiting = asyncio.Event()
    create_waiter = fetcher._create_fetch_waiter

    def create_and_tell() -> Any:
        waiter = create_waiter()
        waiting.set()
        return waiter

    fetcher._create_fetch_waiter = create_and_tell
    return waiting


def records_arrive(fetcher: Any, assignment: Any, tp: TopicPartition, offsets: list[int]) -> None:
    fetcher._records[tp] = FetchResult(
        tp, assignment=assignment, partition_records=Batch(offsets), backoff=0
    )
    for waiter in list(fetcher._fetch_waiters):
        fetcher._notify(waiter)


async def test_aiokafka_takes_an_empty_partition_set_for_every_partition() -> None:
    # What the patch guards against (aiokafka 0.14): the moment Faust's active set is empty.
    _thread, fetcher, assignment = await consumer_thread()
    records_arrive(fetcher, assignment, STREAM, [1, 2, 3])
    taken = await fetcher.fetched_records(set(), timeout=0)
    assert [r.offset for r in taken[STREAM]] == [1, 2, 3]
    assert assignment.state_value(STREAM).position == 4


async def test_a_partition_paused_while_the_fetch_waits_is_not_taken_by_it() -> None:
    fetch_only_active_partitions()
    thread, fetcher, assignment = await consumer_thread()
    active = {CHANGELOG}  # recovery: the stream partition is paused, the changelog is read
    waiting = fetch_waiting(fetcher)
    fetching = asyncio.create_task(AIOKafkaConsumerThread.getmany(thread, active, WAIT))
    await asyncio.wait_for(waiting.wait(), 1.0)
    active.clear()  # recovery done: Faust pauses the changelog too (the streams stay paused)
    records_arrive(fetcher, assignment, STREAM, [1, 2, 3])  # reports sent during the recovery
    assert await fetching == {}
    # Still buffered at offset 1: delivered once Faust resumes the stream partition.
    assert assignment.state_value(STREAM).position == 1
    assert STREAM in fetcher._records
    resumed = await AIOKafkaConsumerThread.getmany(thread, {STREAM}, WAIT)
    assert [r.offset for r in resumed[STREAM]] == [1, 2, 3]


async def test_a_partition_resumed_while_the_fetch_waits_is_taken_by_it() -> None:
    # Faust's live set still decides which partitions a waiting fetch returns (a frozen copy
    # would hold a resumed stream partition's first records until the fetch timed out).
    fetch_only_active_partitions()
    thread, fetcher, assignment = await consumer_thread()
    active = {CHANGELOG}
    waiting = fetch_waiting(fetcher)
    fetching = asyncio.create_task(AIOKafkaConsumerThread.getmany(thread, active, 5.0))
    await asyncio.wait_for(waiting.wait(), 1.0)
    active.add(STREAM)  # recovery over: Faust resumes the stream partition
    records_arrive(fetcher, assignment, STREAM, [1, 2])
    taken = await asyncio.wait_for(fetching, 1.0)
    assert [r.offset for r in taken[STREAM]] == [1, 2]


async def test_an_empty_active_set_fetches_nothing() -> None:
    fetch_only_active_partitions()
    thread, fetcher, assignment = await consumer_thread()
    records_arrive(fetcher, assignment, STREAM, [1, 2])
    assert await AIOKafkaConsumerThread.getmany(thread, set(), WAIT) == {}
    assert assignment.state_value(STREAM).position == 1


async def test_a_client_only_app_still_fetches_every_partition() -> None:
    fetch_only_active_partitions()
    thread, fetcher, assignment = await consumer_thread()
    records_arrive(fetcher, assignment, STREAM, [1])
    records_arrive(fetcher, assignment, CHANGELOG, [1, 2])
    taken = await AIOKafkaConsumerThread.getmany(thread, None, WAIT)
    assert set(taken) == {STREAM, CHANGELOG}
