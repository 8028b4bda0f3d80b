"""The lag monitor against the session's real broker: STALL -> STOP with alerts and the watchdog,
numbers equal to Kafka's own kafka-consumer-groups tool, transaction markers are not lag."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from phaseflow.models.codec import decode
from phaseflow.models.events import Alert
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.monitoring.alert_publisher import KafkaAlertPublisher
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow
from phaseflow.streams.monitoring.lag_cli import run_lag
from phaseflow.streams.monitoring.lag_sampler import LagSampler, PartitionLag
from phaseflow.streams.monitoring.lag_status import LagStatus
from tests.fixtures.brokers import Broker

TIMEOUT = 60.0


async def _until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = TIMEOUT
) -> float:
    """Poll ``condition`` until true; return the seconds it took, fail after ``within``."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        result = condition()
        if result if isinstance(result, bool) else await result:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out after {within} s waiting for {what}")


async def _produce(broker: Broker, topic: str, count: int, *, partition: int | None = 0) -> None:
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap), enable_idempotence=False)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(
                topic, f'{{"n": {i}}}'.encode(), key=b"k%d" % i, partition=partition
            )
        await producer.flush()
    finally:
        await producer.stop()


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        del revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.event.set()


async def _join_and_consume(broker: Broker, topic: str, group: str, count: int) -> AIOKafkaConsumer:
    """A real group member that consumed ``count`` records and committed; the caller stops it."""
    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap),
        **broker.client_tuning,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        listener = _Assigned()
        consumer.subscribe([topic], listener=listener)
        got = 0
        deadline = time.monotonic() + TIMEOUT
        while got < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            got += sum(len(records) for records in batches.values())
        assert got == count, f"consumed {got} of {count}"
        await consumer.commit()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def _by_partition(rows: Iterable[PartitionLag], group: str, topic: str) -> dict[int, PartitionLag]:
    return {row.partition: row for row in rows if row.group == group and row.topic == topic}


async def _read_alerts(broker: Broker, topic: str, count: int) -> list[tuple[bytes, Alert]]:
    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[tuple[bytes, Alert]] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                got.extend((record.key, decode(Alert, record.value)) for record in records)
    finally:
        await consumer.stop()
    return got


async def test_stall_then_stop_raises_alerts_and_the_watchdog(
    broker: Broker, unique_prefix: str, make_settings: Callable[..., Settings]
) -> None:
    topic, group = f"{unique_prefix}.events", f"{unique_prefix}.group"
    window = 3.0
    settings = make_settings(lag_window_seconds=window, lag_sample_interval_seconds=0.25)
    await _produce(broker, topic, 10)
    member = await _join_and_consume(broker, topic, group, 10)
    restarts = asyncio.Event()

    async def restart_own_consumer() -> None:
        restarts.set()

    try:
        async with KafkaAlertPublisher(settings) as publisher:
            monitor = LagMonitor(
                settings,
                groups=[group],
                publish=publisher,
                own_group=group,  # pretend it is ours, to see the watchdog fire
                own_stall_after=timedelta(seconds=1),
                on_own_stall=restart_own_consumer,
            )
            async with monitor:

                def partition_0() -> LagRow | None:
                    rows = [r for r in monitor.rows() if r.topic == topic and r.partition == 0]
                    return rows[0] if rows else None

                await _until(lambda: partition_0() is not None, "a first sample")
                first = partition_0()
                assert first is not None
                assert (first.committed, first.end, first.lag, first.lag_seconds) == (
                    10,
                    10,
                    0,
                    0.0,
                )
                assert monitor.group_status(group) is LagStatus.OK

                # The member stays in the group but stops consuming while more records arrive.
                produced_at = time.time()
                await _produce(broker, topic, 5)
                to_stall = await _until(
                    lambda: monitor.group_status(group) is LagStatus.STALL, "STALL"
                )
                to_stop = await _until(
                    lambda: monitor.group_status(group) is LagStatus.STOP, "STOP"
                )
                await _until(restarts.is_set, "the own-group watchdog")
                stuck = partition_0()
                assert stuck is not None
                assert (stuck.committed, stuck.end, stuck.lag, stuck.raw_lag) == (10, 15, 5, 5)
                assert stuck.lag_seconds is not None
                # The oldest unconsumed record was produced just before the STALL wait began.
                assert 0 <= stuck.lag_seconds <= time.time() - produced_at + 1
                assert stuck.lag_seconds >= to_stall + to_stop - 1
            await monitor.stop()  # idempotent after the context exit
        # STOP only after the window, counted from the first stuck sample.
        assert to_stall < window
        assert to_stall + to_stop >= window

        alerts = await _read_alerts(broker, settings.topic(TopicName.ALERTS), 2)
        assert {key for key, _ in alerts} == {f"consumer_lag:{group}".encode()}
        assert [alert.details["status"] for _, alert in alerts] == ["STALL", "STOP"]
        assert all(alert.severity == "critical" for _, alert in alerts)

        # `phaseflow lag` shows the same partition, and from one sample already STOP: the
        # group's last commit (from __consumer_offsets) is older than the window.
        out = io.StringIO()
        code = await asyncio.to_thread(run_lag, settings, groups=[group], out=out)
        assert code == 0, out.getvalue()
        table = out.getvalue().splitlines()
        assert table[0].split()[:3] == ["GROUP", "TOPIC", "PARTITION"]
        row = next(
            line.split()
            for line in table
            if line.startswith(group) and f" {topic} " in line and line.split()[2] == "0"
        )
        assert row[:6] == [group, topic, "0", "10", "15", "5"]
        if broker.kind == "kafka":  # Tansu has no __consumer_offsets to read commit times from
            assert row[7] == "STOP", out.getvalue()
    finally:
        await member.stop()


def _kafka_tool_describe(broker: Broker, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    from tests.support.apache_kafka import CONSUMER_GROUP_COMMAND, ApacheKafka

    kafka = broker.handle
    assert isinstance(kafka, ApacheKafka)
    done = kafka.run_tool(
        CONSUMER_GROUP_COMMAND,
        "--bootstrap-server",
        broker.bootstrap,
        "--describe",
        "--group",
        group,
    )
    assert done.returncode == 0, done.stderr
    found: dict[tuple[str, int], tuple[int, int, int]] = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(cells) >= 6 and cells[0] == group and cells[3] != "-":
            found[(cells[1], int(cells[2]))] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return found


async def test_lag_equals_kafka_consumer_groups_describe(
    broker: Broker, unique_prefix: str
) -> None:
    if broker.kind != "kafka":
        pytest.skip(
            f"compares with Kafka's own kafka-consumer-groups tool, which runs from the Apache "
            f"Kafka jars; the session broker is '{broker.kind}' (use PHASEFLOW_TEST_BROKER=kafka)"
        )
    topic, group = f"{unique_prefix}.events", f"{unique_prefix}.group"
    await _produce(broker, topic, 20, partition=None)  # spread over the 4 partitions by key
    member = await _join_and_consume(broker, topic, group, 20)
    await member.stop()
    await _produce(broker, topic, 13, partition=None)  # behind on several partitions

    async with LagSampler(KafkaEndpoint(broker.bootstrap)) as sampler:
        rows = await sampler.sample([group])
        assert sampler.list_all_offsets  # Apache Kafka answers the all-offsets request
    async with LagSampler(KafkaEndpoint(broker.bootstrap), list_all_offsets=False) as explicit:
        explicit_rows = await explicit.sample([group])
    tool = await asyncio.to_thread(_kafka_tool_describe, broker, group)

    ours = {
        (row.topic, row.partition): (row.committed, row.end, row.raw_lag)
        for row in rows
        if row.group == group
    }
    assert ours == tool
    assert sum(lag for _, _, lag in ours.values()) == 13
    # No transactions here, so the effective lag is the tool's lag.
    assert all(row.lag == row.raw_lag for row in rows)
    # The fallback used on Tansu (explicit partitions) reads the same offsets.
    assert {(r.topic, r.partition): (r.committed, r.end, r.raw_lag) for r in explicit_rows} == ours


@pytest.mark.transactions
async def test_transaction_markers_are_not_lag(broker: Broker, unique_prefix: str) -> None:
    topic, group = f"{unique_prefix}.tx", f"{unique_prefix}.group"
    tp = TopicPartition(topic, 0)
    producer = kafka_clients.producer(
        KafkaEndpoint(broker.bootstrap),
        transactional_id=f"{unique_prefix}.producer",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        for _ in range(2):  # offsets 0-4, commit marker 5, 6-10, commit marker 11: end 12
            async with producer.transaction():
                for i in range(5):
                    await producer.send(topic, b"v%d" % i, partition=0)

        # A transactional consumer commits "last processed + 1" = 11, the last marker's offset.
        member = kafka_clients.consumer(
            KafkaEndpoint(broker.bootstrap),
            group_id=group,
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await member.start()
        try:
            member.assign([tp])
            member.seek(tp, 0)
            records = []
            deadline = time.monotonic() + TIMEOUT
            while len(records) < 10 and time.monotonic() < deadline:
                records.extend((await member.getmany(tp, timeout_ms=200)).get(tp, []))
            assert [r.offset for r in records] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
            await member.commit({tp: records[-1].offset + 1})
        finally:
            await member.stop()

        async with LagSampler(KafkaEndpoint(broker.bootstrap)) as sampler:
            [row] = [
                r for r in await sampler.sample([group]) if r.topic == topic and r.partition == 0
            ]
            assert (row.committed, row.end, row.raw_lag) == (11, 12, 1)  # what the tool shows
            assert (row.lag, row.lag_seconds) == (0, 0.0)  # what it really is

            # An open transaction: its record is real lag, not yet readable (age unknown).
            await producer.begin_transaction()
            await (await producer.send(topic, b"pending", partition=0))
            started = time.monotonic()
            [row] = [
                r for r in await sampler.sample([group]) if r.topic == topic and r.partition == 0
            ]
            probe_seconds = time.monotonic() - started
            assert (row.committed, row.end, row.raw_lag, row.lag) == (11, 13, 2, 2)
            assert row.lag_seconds is None
            # Aborted: the record and the abort marker are invisible, so no lag again.
            await producer.abort_transaction()
            rows: list[PartitionLag] = []

            async def abort_marker_written() -> bool:
                # The coordinator writes the marker after abort_transaction() returns.
                rows[:] = [
                    r
                    for r in await sampler.sample([group])
                    if r.topic == topic and r.partition == 0
                ]
                return rows[0].end == 14

            await _until(abort_marker_written, "the abort marker")
            assert (rows[0].committed, rows[0].raw_lag, rows[0].lag) == (11, 3, 0)
        print(f"\n[{broker.kind}] probing an open transaction took {probe_seconds:.2f} s")
    finally:
        await producer.stop()


@pytest.mark.transactions
async def test_monitor_stays_ok_on_a_transactional_topic(
    broker: Broker, unique_prefix: str, make_settings: Callable[..., Settings]
) -> None:
    topic, group = f"{unique_prefix}.tx", f"{unique_prefix}.group"
    tp = TopicPartition(topic, 0)
    producer = kafka_clients.producer(
        KafkaEndpoint(broker.bootstrap),
        transactional_id=f"{unique_prefix}.producer",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"only", partition=0)
    finally:
        await producer.stop()
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign([tp])  # aiokafka commits only for assigned partitions
        await member.commit({tp: 1})  # processed offset 0; the marker at 1 stays "unconsumed"
    finally:
        await member.stop()

    settings = make_settings(lag_window_seconds=1.0)
    async with LagMonitor(settings, groups=[group], interval=0.1) as monitor:
        await _until(lambda: monitor.rounds >= 15, "15 samples (longer than the window)")
        rows = [row for row in monitor.rows() if row.topic == topic and not row.no_commit]
    assert [(r.partition, r.raw_lag, r.lag, r.status) for r in rows] == [(0, 1, 0, LagStatus.OK)]
