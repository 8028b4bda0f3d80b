"""The test broker does what the rest of the suite relies on: round trips, groups, transactions."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from tests.fixtures.brokers import Broker

TIMEOUT = 60.0


async def _drain(consumer: AIOKafkaConsumer, count: int) -> list[tuple[bytes | None, bytes]]:
    """Read ``count`` records (or fail after TIMEOUT)."""
    got: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            got.extend((record.key, record.value) for record in records)
    return got


async def test_produce_consume_round_trip(broker: Broker, unique_prefix: str) -> None:
    topic = f"{unique_prefix}.events"
    sent = [(f"k{i % 3}".encode(), f'{{"n": {i}}}'.encode()) for i in range(50)]
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap))
    await producer.start()
    try:
        for key, value in sent:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap),
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await _drain(consumer, len(sent))
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(sent)
    # One key, one partition: per-key order survives (what keying by game_date relies on).
    for key in {k for k, _ in sent}:
        assert [v for k, v in got if k == key] == [v for k, v in sent if k == key]


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        del revoked  # nothing to hand over: the test consumer keeps no state

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.event.set()


async def test_consumer_group_join(broker: Broker, unique_prefix: str) -> None:
    topic = f"{unique_prefix}.events"
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()

    listener = _Assigned()
    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap),
        **broker.client_tuning,
        group_id=f"{unique_prefix}.group",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        started = time.monotonic()
        consumer.subscribe([topic], listener=listener)
        fetch = asyncio.ensure_future(_drain(consumer, 1))
        await asyncio.wait_for(listener.event.wait(), TIMEOUT)
        join_seconds = time.monotonic() - started
        assert consumer.assignment(), "joined the group but got no partitions"
        assert await fetch == [(b"k", b"hello")]
        await consumer.commit()
        committed = [await consumer.committed(tp) for tp in consumer.assignment()]
        assert sum(offset or 0 for offset in committed) == 1
    finally:
        await consumer.stop()
    print(
        f"\n[{broker.kind}] consumer group join took {join_seconds:.2f} s "
        f"(client tuning {dict(broker.client_tuning)})"
    )


@pytest.mark.transactions
async def test_transactions_commit_and_abort(broker: Broker, unique_prefix: str) -> None:
    topic = f"{unique_prefix}.tx"
    producer = kafka_clients.producer(
        KafkaEndpoint(broker.bootstrap),
        transactional_id=f"{unique_prefix}.producer",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, f"committed-{i}".encode(), key=b"k")
        await producer.begin_transaction()
        # Waited for, so the aborted record is really in the log before the abort marker.
        await (await producer.send(topic, b"aborted", key=b"k"))
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-after-abort", key=b"k")
    finally:
        await producer.stop()

    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap),
        topic,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = [value for _, value in await _drain(consumer, 4)]
        # Nothing more arrives after the four committed records (the aborted one stays hidden).
        extra = await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()
    assert got == [b"committed-0", b"committed-1", b"committed-2", b"committed-after-abort"]
    assert not any(extra.values())
