"""The prediction request consumer on a real broker: batches, commits, re-delivery, hand-over.

The handler records what it was given; correctness downstream of it (one prediction row per
key) is the prediction path's and the chaos suite's to show.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

from aiokafka import TopicPartition

from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics

RECORDS = 240


class Seen:
    """Every (partition, offset) handed to any handler, with how often; awaitable counts."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def add(self, partition: int, offset: int) -> None:
        self.counts[(partition, offset)] += 1
        for distinct, event in self._waiters:
            if len(self.counts) >= distinct:
                event.set()

    async def until(self, distinct: int, give_up_after: float) -> None:
        event = asyncio.Event()
        self._waiters.append((distinct, event))
        if len(self.counts) >= distinct:
            event.set()
        await asyncio.wait_for(event.wait(), give_up_after)


class Recorder:
    """A batch handler recording into ``seen``; ``failures_left`` batches fail first."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.batch_sizes: list[int] = []
        self.failures_left = 0

    async def __call__(self, items: Sequence[tuple[bytes, Origin]]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("injected: downstream unreachable")
        self.batch_sizes.append(len(items))
        for value, origin in items:
            assert value == b"request-%d-%d" % (origin.partition, origin.offset)
            self.seen.add(origin.partition, origin.offset)


async def produce(settings: Settings, indices: range) -> set[tuple[int, int]]:
    """Record ``i`` goes to partition ``i % partitions`` at offset ``i // partitions``."""
    partitions = settings.kafka_topic_partitions
    producer = kafka_clients.producer(settings, acks="all")
    await producer.start()
    produced: set[tuple[int, int]] = set()
    try:
        topic = settings.topic(TopicName.PREDICTION_REQUESTS)
        for i in indices:
            partition, offset = i % partitions, i // partitions
            meta = await producer.send_and_wait(
                topic, b"request-%d-%d" % (partition, offset), key=b"%d" % i, partition=partition
            )
            assert (meta.partition, meta.offset) == (partition, offset)
            produced.add((partition, offset))
    finally:
        await producer.stop()
    return produced


async def committed(settings: Settings) -> dict[int, int | None]:
    consumer = kafka_clients.consumer(
        settings, group_id=settings.prediction_workers_group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = settings.topic(TopicName.PREDICTION_REQUESTS)
        return {
            p: await consumer.committed(TopicPartition(topic, p))
            for p in range(settings.kafka_topic_partitions)
        }
    finally:
        await consumer.stop()


def consumer(settings: Settings, handler: Recorder) -> PredictionRequestConsumer:
    return PredictionRequestConsumer(
        settings, handler, batch_size=50, batch_wait_seconds=0.2, retry_seconds=0.1
    )


async def test_every_request_is_handled_in_batches_and_committed_after_handling(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    produced = await produce(settings, range(RECORDS))
    seen = Seen()
    handler = Recorder(seen)
    handler.failures_left = 1  # the first batch fails once: read again, nothing lost
    async with consumer(settings, handler) as requests:
        await seen.until(RECORDS, give_up_after=60)
    assert set(seen.counts) == produced
    assert set(seen.counts.values()) == {1}  # the failed batch was not half-handled
    assert max(handler.batch_sizes) <= 50
    assert requests.failed_batches == 1
    per_partition = RECORDS // settings.kafka_topic_partitions
    everything = dict.fromkeys(range(settings.kafka_topic_partitions), per_partition)
    assert await committed(settings) == everything

    # A restarted worker of the group starts past everything committed.
    later = Seen()
    async with consumer(settings, Recorder(later)):
        await produce(settings, range(RECORDS, RECORDS + 1))
        await later.until(1, give_up_after=60)
    assert list(later.counts) == [(0, per_partition)]


async def test_a_second_worker_takes_over_the_partitions_of_one_that_leaves(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    seen = Seen()
    first, second = Recorder(seen), Recorder(seen)
    # Two workers: two static member ids (one id would fence the other).
    leaving = consumer(settings.model_copy(update={"worker_id": "leaving"}), first)
    staying = consumer(settings.model_copy(update={"worker_id": "staying"}), second)
    half = RECORDS // 2
    async with staying:
        async with leaving:
            produced = await produce(settings, range(half))
            await seen.until(half, give_up_after=60)
        # The first worker stopped; a static member does not leave the group, so its
        # partitions become the second one's once its session times out.
        handled_by_first = sum(first.batch_sizes)
        produced |= await produce(settings, range(half, RECORDS))
        await seen.until(RECORDS, give_up_after=90)
    assert set(seen.counts) == produced
    assert handled_by_first > 0
    assert sum(first.batch_sizes) == handled_by_first
    assert sum(second.batch_sizes) >= half
    per_partition = RECORDS // settings.kafka_topic_partitions
    everything = dict.fromkeys(range(settings.kafka_topic_partitions), per_partition)
    assert await committed(settings) == everything
