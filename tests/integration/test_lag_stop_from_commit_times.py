"""STOP from the group's commit timestamps (``__consumer_offsets``) on a real broker: the first
sample after the threshold is STOP, with no window of the monitor's own observation needed."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag import LagMonitor
from phaseflow.streams.monitoring.lag_cli import run_lag
from phaseflow.streams.monitoring.lag_status import LagStatus
from tests.fixtures.brokers import Broker

WINDOW = 3.0
INTERVAL = 0.25


async def _produce(broker: Broker, topic: str, count: int) -> None:
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap), enable_idempotence=False)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, b"v%d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def _commit_then_stop(broker: Broker, group: str, tp: TopicPartition) -> tuple[float, float]:
    """A group member commits offset 4 (of 10: lag 6) once, then goes away; the wall-clock
    interval around the commit."""
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign([tp])
        before = time.time()
        await member.commit({tp: 4})
        after = time.time()
    finally:
        await member.stop()
    return before, after


async def test_a_group_that_stops_committing_is_stop_on_the_first_sample_after_the_threshold(
    broker: Broker, unique_prefix: str, make_settings: Callable[..., Settings]
) -> None:
    if broker.kind != "kafka":
        pytest.skip(f"needs __consumer_offsets (Apache Kafka); the broker is '{broker.kind}'")
    topic, group = f"{unique_prefix}.events", f"{unique_prefix}.group"
    tp = TopicPartition(topic, 0)
    settings = make_settings(lag_window_seconds=WINDOW, lag_sample_interval_seconds=INTERVAL)
    await _produce(broker, topic, 10)  # the unread records are older than the commit
    before, after = await _commit_then_stop(broker, group, tp)

    rounds: list[tuple[datetime, LagStatus, datetime | None, str]] = []
    async with LagMonitor(settings, groups=[group]) as monitor:
        await monitor.stop()  # the background loop: the test drives the rounds itself
        await monitor.start(background=False)
        assert monitor.sampler is not None
        assert monitor.sampler.commit_times is not None
        assert monitor.sampler.commit_times.available, monitor.sampler.commit_times.error
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = [row for row in await monitor.sample_once() if row.topic == topic]
            # Partitions 1-3 (of num.partitions=4) were never committed: NO_COMMIT, empty.
            assert [(r.partition, r.status, r.lag) for r in rows if r.no_commit] == [
                (p, LagStatus.NO_COMMIT, 0) for p in (1, 2, 3)
            ]
            rows = [row for row in rows if not row.no_commit]
            assert [(r.partition, r.committed, r.end, r.lag) for r in rows] == [(0, 4, 10, 6)]
            row = rows[0]
            rounds.append((row.sampled_at, row.status, row.committed_at, row.reason))
            if row.status is LagStatus.STOP:
                break
            await asyncio.sleep(INTERVAL)
    assert rounds[-1][1] is LagStatus.STOP, rounds

    # The commit time is the broker's, read from __consumer_offsets (ms resolution).
    committed_at = rounds[0][2]
    assert committed_at is not None
    assert before - 0.002 <= committed_at.timestamp() <= after + 0.002
    threshold = committed_at + timedelta(seconds=WINDOW)
    # Not STOP while the last commit is within the window; STOP on the first sample after it.
    early = timedelta(milliseconds=50)  # evaluation runs a moment after the sample's time
    assert all(
        status is not LagStatus.STOP for at, status, _, _ in rounds if at < threshold - early
    )
    first_after = next(index for index, (at, *_) in enumerate(rounds) if at > threshold)
    assert first_after == len(rounds) - 1, rounds
    assert "no commit for" in rounds[-1][3]
    print(
        f"\nSTOP at {(rounds[-1][0] - committed_at).total_seconds():.2f} s after the last commit "
        f"(threshold {WINDOW} s, interval {INTERVAL} s, {len(rounds)} samples)"
    )

    # A single `phaseflow lag` run, long after the stop, shows STOP from its one sample.
    assert datetime.now(UTC) > threshold
    out = io.StringIO()
    code = await asyncio.to_thread(run_lag, settings, groups=[group], out=out)
    assert code == 0, out.getvalue()
    table = out.getvalue()
    assert "commit times unavailable" not in table
    [line] = [
        line
        for line in table.splitlines()
        if line.startswith(group) and f" {topic} " in line and line.split()[2] == "0"
    ]
    assert line.split()[-1] == "STOP", table
    assert f"group {group}: STOP" in table


async def test_discovery_watches_matching_groups_and_always_the_own_ones(
    broker: Broker, unique_prefix: str, make_settings: Callable[..., Settings]
) -> None:
    topic = f"{unique_prefix}.events"
    tp = TopicPartition(topic, 0)
    kept, skipped = f"{unique_prefix}.kept", f"{unique_prefix}.skip"
    await _produce(broker, topic, 10)
    for group in (kept, skipped):
        await _commit_then_stop(broker, group, tp)  # groups that only commit, never join
    settings = make_settings(
        lag_include=rf"{unique_prefix}\..*", lag_exclude=rf"{unique_prefix}\.skip"
    )
    async with LagMonitor(settings) as monitor:
        await monitor.stop()
        await monitor.start(background=False)
        rows = await monitor.sample_once()
    assert monitor.groups[: len(monitor.own_groups)] == monitor.own_groups
    assert kept in monitor.groups
    assert skipped not in monitor.groups
    committed = [
        (r.group, r.committed, r.lag) for r in rows if r.topic == topic and not r.no_commit
    ]
    assert committed == [(kept, 4, 6)]
