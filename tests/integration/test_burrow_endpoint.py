"""The Burrow-compatible endpoints of a real worker on the session broker (Apache Kafka with
PHASEFLOW_TEST_BROKER=kafka): a slow group that keeps committing (lag, OK), a group that
stopped (STOP, group ERR), an idle exactly_once group (raw lag 1, the commit marker: OK) and a
group whose offsets were reset back (REWIND, group ERR), all answered in Burrow's schema
(tests/support/burrow_schema.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.fixtures.brokers import Broker
from tests.support import burrow_schema
from tests.support.burrow_schema import mismatches

CLUSTER = "it-cluster"
WINDOW = 4.0
TIMEOUT = 90.0
SLOW_RECORDS = 900  # below the 1000-record WARN threshold


async def _one_partition_topic(broker: Broker, topic: str) -> None:
    """Each group commits to partition 0 only; a topic auto-created with more partitions would
    add NO_COMMIT partitions to the group's answer (shown, as Burrow does, with ``complete``
    0; tests/unit/test_burrow_endpoint.py covers them)."""
    admin = kafka_clients.admin(KafkaEndpoint(broker.bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(broker: Broker, topic: str, count: int) -> None:
    await _one_partition_topic(broker, topic)
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap), enable_idempotence=False)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, b"v%d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def _commit_once(broker: Broker, group: str, tp: TopicPartition, offset: int) -> None:
    """A member commits ``offset`` once, then goes away (a consumer that died)."""
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign([tp])
        await member.commit({tp: offset})
    finally:
        await member.stop()


async def _commit_slowly(
    broker: Broker, group: str, tp: TopicPartition, offsets: range, done: list[int]
) -> None:
    """A consumer far behind that keeps going: one more offset every 0.1 s (a STALL would
    need three samples, 1.5 s, without one)."""
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign([tp])
        for offset in offsets:
            await member.commit({tp: offset})
            done.append(offset)
            await asyncio.sleep(0.1)
    finally:
        await member.stop()


async def _transactional_group(broker: Broker, prefix: str, group: str) -> TopicPartition:
    """One record written in a transaction (offset 0, commit marker 1), and a group that
    processed it and committed 1 once: raw lag 1 (the marker), effective lag 0."""
    tp = TopicPartition(f"{prefix}.tx-events", 0)
    await _one_partition_topic(broker, tp.topic)
    producer = kafka_clients.producer(
        KafkaEndpoint(broker.bootstrap),
        transactional_id=f"{prefix}.producer",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(tp.topic, b"only", partition=0)
    finally:
        await producer.stop()
    await _commit_once(broker, group, tp, 1)
    return tp


async def _get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as response:
        assert response.content_type == "application/json", path
        return response.status, await response.json()


async def _until_partition(
    session: aiohttp.ClientSession, path: str, wanted: str, since: float
) -> Any:
    """Poll the group's ``/lag`` until its one partition has the status ``wanted``; the body of
    that answer. Prints when each status was first seen, in seconds after ``since`` (a
    measurement, not asserted)."""
    deadline = time.monotonic() + TIMEOUT
    seen: list[tuple[int, str, list[str]]] = []
    first_seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        code, body = await _get(session, path)
        partitions = [p["status"] for p in body["status"]["partitions"]]
        seen.append((code, body["status"]["status"], partitions))
        for status in partitions:
            first_seen.setdefault(status, time.time() - since)
        if partitions == [wanted]:
            assert code == 200
            shown = ", ".join(f"{name} after {at:.1f} s" for name, at in first_seen.items())
            group = path.split("/")[-2].rsplit(".", 1)[-1]
            print(f"\n[burrow endpoint, window {WINDOW:g} s] {group}: {shown}")
            return body
        await asyncio.sleep(0.5)
    pytest.fail(f"{path} never showed {wanted} within {TIMEOUT} s; last answers {seen[-5:]}")


async def _check_rewind(
    broker: Broker, session: aiohttp.ClientSession, base: str, group: str, topic: str
) -> None:
    """A group at offset 60 of 100 resets to 20 and goes on from there: REWIND, group ERR."""
    tp = TopicPartition(topic, 0)
    await _produce(broker, topic, 100)
    await _commit_once(broker, group, tp, 60)
    path = f"{base}/{group}/lag"
    deadline = time.monotonic() + TIMEOUT
    while True:  # the monitor must have seen 60 before the reset
        code, body = await _get(session, path)
        partitions = body["status"]["partitions"]
        if code == 200 and partitions and partitions[0]["end"]["offset"] == 60:
            break
        assert time.monotonic() < deadline, f"{path} never showed offset 60: {body}"
        await asyncio.sleep(0.2)
    reset_at, done = time.time(), list[int]()
    rewinder = asyncio.create_task(_commit_slowly(broker, group, tp, range(20, 100), done))
    try:
        body = await _until_partition(session, path, "REWIND", reset_at)
    finally:
        rewinder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rewinder
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
    [partition] = body["status"]["partitions"]
    assert body["status"]["status"] == "ERR"
    assert 20 <= partition["end"]["offset"] < 60


async def _check_slow(session: aiohttp.ClientSession, path: str, last_commit: int) -> None:
    code, body = await _get(session, path)
    assert code == 200
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
    status = body["status"]
    [partition] = status["partitions"]
    assert (status["status"], partition["status"]) == ("OK", "OK")
    offset = partition["end"]["offset"]
    assert 0 < offset <= last_commit
    assert partition["current_lag"] == SLOW_RECORDS - offset == status["totallag"]


async def _check_exactly_once(session: aiohttp.ClientSession, path: str) -> None:
    code, body = await _get(session, path)
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
    [partition] = body["status"]["partitions"]
    assert (code, body["status"]["status"], body["status"]["totallag"]) == (200, "OK", 0)
    assert (partition["status"], partition["current_lag"]) == ("OK", 0)
    assert partition["end"]["offset"] == 1


async def _check_lists_and_not_found(
    session: aiohttp.ClientSession, base: str, groups: set[str], prefix: str
) -> None:
    """The consumer and cluster lists, and Burrow's not-found answers."""
    code, body = await _get(session, base)
    assert code == 200
    assert mismatches(body, burrow_schema.CONSUMER_LIST_RESPONSE) == []
    assert groups <= set(body["consumers"])
    code, body = await _get(session, "/v3/kafka")
    assert (code, body["clusters"]) == (200, [CLUSTER])
    assert mismatches(body, burrow_schema.CLUSTER_LIST_RESPONSE) == []
    code, body = await _get(session, f"{base}/{prefix}.nobody/lag")
    assert (code, body["status"]["status"]) == (404, "NOTFOUND")
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
    code, body = await _get(session, f"/v3/kafka/other/consumer/{next(iter(groups))}/lag")
    assert (code, body["status"]["status"]) == (404, "NOTFOUND")
    code, body = await _get(session, "/v3/kafka/other/consumer")
    assert (code, body["error"], body["message"]) == (404, True, "cluster not found")
    assert mismatches(body, burrow_schema.ERROR_RESPONSE) == []


@pytest.mark.transactions
async def test_a_worker_answers_burrows_lag_for_slow_stopped_exactly_once_rewound_groups(
    broker: Broker,
    unique_prefix: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
) -> None:
    if broker.kind != "kafka":
        pytest.skip(f"STOP from commit times needs __consumer_offsets; broker is '{broker.kind}'")
    settings = make_settings(
        lag_window_seconds=WINDOW, lag_sample_interval_seconds=0.5, lag_burrow_cluster=CLUSTER
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    session = client_for(settings)

    slow, stopped = f"{unique_prefix}.slow", f"{unique_prefix}.stopped"
    slow_tp = TopicPartition(f"{unique_prefix}.slow-events", 0)
    stopped_tp = TopicPartition(f"{unique_prefix}.stopped-events", 0)
    await _produce(broker, slow_tp.topic, SLOW_RECORDS)
    await _produce(broker, stopped_tp.topic, 10)
    exactly_once = f"{unique_prefix}.eos"
    await _transactional_group(broker, unique_prefix, exactly_once)
    before_commit = time.time()
    await _commit_once(broker, stopped, stopped_tp, 4)
    after_commit = time.time()
    slow_commits: list[int] = []
    committer = asyncio.create_task(
        _commit_slowly(broker, slow, slow_tp, range(1, SLOW_RECORDS), slow_commits)
    )
    try:
        base = f"/v3/kafka/{CLUSTER}/consumer"
        body = await _until_partition(session, f"{base}/{stopped}/lag", "STOP", after_commit)
        assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
        status = body["status"]
        assert (status["cluster"], status["group"], status["status"]) == (CLUSTER, stopped, "ERR")
        assert body["request"]["url"] == f"{base}/{stopped}/lag"
        [partition] = status["partitions"]
        assert partition["topic"] == stopped_tp.topic
        assert (partition["current_lag"], partition["end"]["offset"]) == (6, 4)
        # The commit's own time, read from __consumer_offsets (ms, as Burrow's).
        committed_ms = partition["end"]["timestamp"]
        assert before_commit * 1000 - 1000 <= committed_ms <= after_commit * 1000 + 1000
        assert (status["totallag"], status["partition_count"], status["maxlag"]) == (
            6,
            1,
            partition,
        )

        # Meanwhile the slow group kept committing: behind, and OK.
        assert not committer.done(), "the slow consumer ran out of records"
        await _check_slow(session, f"{base}/{slow}/lag", slow_commits[-1])

        # Idle longer than the window at raw lag 1 (the commit marker): Burrow calls it ERR.
        await _check_exactly_once(session, f"{base}/{exactly_once}/lag")

        # /status: only the partitions that are not OK.
        code, body = await _get(session, f"{base}/{slow}/status")
        assert (code, body["status"]["partitions"], body["status"]["partition_count"]) == (
            200,
            [],
            1,
        )
        code, body = await _get(session, f"{base}/{stopped}/status")
        assert [p["status"] for p in body["status"]["partitions"]] == ["STOP"]

        rewound = f"{unique_prefix}.rewound"
        await _check_rewind(broker, session, base, rewound, f"{unique_prefix}.rewound-events")

        await _check_lists_and_not_found(
            session, base, {slow, stopped, exactly_once, rewound}, unique_prefix
        )
    finally:
        committer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await committer
