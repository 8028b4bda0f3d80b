"""Every watched group on a real broker (Apache Kafka): phaseflow's per-partition numbers equal
Kafka's ConsumerGroupCommand on several groups at once, partitions without a commit included;
one `phaseflow lag` run without --group lists every discovered group and shows a stopped one as
STOP (table and --json); the worker's ``GET /lag`` serves every watched group."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.monitoring.lag_cli import run_lag
from phaseflow.streams.monitoring.lag_sampler import LagSampler
from tests.fixtures.brokers import Broker

TIMEOUT = 60.0
WINDOW = 3.0

#: (committed offset or None for "-", log-end offset, lag or None) per (group, topic, partition)
Described = dict[tuple[str, str, int], tuple[int | None, int, int | None]]


def _needs_apache_kafka(broker: Broker) -> None:
    if broker.kind != "kafka":
        pytest.skip(
            f"needs Apache Kafka (its ConsumerGroupCommand and __consumer_offsets); the session "
            f"broker is '{broker.kind}' (use PHASEFLOW_TEST_BROKER=kafka)"
        )


async def _produce(broker: Broker, topic: str, per_partition: dict[int, int]) -> None:
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap), enable_idempotence=False)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for i in range(count):
                await producer.send(topic, b"v%d" % i, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def _commit_only(broker: Broker, group: str, offsets: dict[TopicPartition, int]) -> None:
    """A group that commits ``offsets`` once and never joins (stopped)."""
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign(list(offsets))
        await member.commit(offsets)
    finally:
        await member.stop()


async def _live_member(broker: Broker, topics: list[str], group: str) -> AIOKafkaConsumer:
    """A member that joined (assigned every partition of ``topics``) and committed partition 0
    of the first topic only."""
    member = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap),
        **broker.client_tuning,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await member.start()
    member.subscribe(topics)
    deadline = time.monotonic() + TIMEOUT
    while len(member.assignment()) < 4 * len(topics):
        assert time.monotonic() < deadline, "the member got no assignment"
        await member.getmany(timeout_ms=200)
    await member.commit({TopicPartition(topics[0], 0): 2})
    return member


def _describe(broker: Broker, groups: list[str]) -> Described:
    """``kafka-consumer-groups --describe --group A --group B ...``, parsed."""
    from tests.support.apache_kafka import CONSUMER_GROUP_COMMAND, ApacheKafka

    kafka = broker.handle
    assert isinstance(kafka, ApacheKafka)
    flags = [arg for group in groups for arg in ("--group", group)]
    done = kafka.run_tool(
        CONSUMER_GROUP_COMMAND, "--bootstrap-server", broker.bootstrap, "--describe", *flags
    )
    assert done.returncode == 0, done.stderr
    found: Described = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(cells) >= 6 and cells[0] in groups:
            committed = None if cells[3] == "-" else int(cells[3])
            lag = None if cells[5] == "-" else int(cells[5])
            found[(cells[0], cells[1], int(cells[2]))] = (committed, int(cells[4]), lag)
    return found


async def test_per_partition_lag_equals_consumer_group_command_on_several_groups(
    broker: Broker, unique_prefix: str
) -> None:
    _needs_apache_kafka(broker)
    topic, other = f"{unique_prefix}.events", f"{unique_prefix}.other"
    behind, partial, live = (f"{unique_prefix}.{name}" for name in ("behind", "partial", "live"))
    await _produce(broker, topic, {0: 7, 1: 5, 2: 3, 3: 9})
    await _produce(broker, other, {0: 1, 1: 2, 2: 0, 3: 4})
    tps = [TopicPartition(topic, p) for p in range(4)]
    await _commit_only(broker, behind, {tps[0]: 7, tps[1]: 2, tps[2]: 3, tps[3]: 1})
    await _commit_only(broker, partial, {tps[0]: 4, tps[1]: 5})  # 2 and 3: no commit
    # Assigned, no commit: events 1-3 and every partition of "other", a topic the group never
    # committed (only DescribeGroups' member assignments know of those).
    member = await _live_member(broker, [topic, other], live)
    try:
        groups = [behind, partial, live]
        async with LagSampler(KafkaEndpoint(broker.bootstrap)) as sampler:
            rows = await sampler.sample(groups)
        tool = await asyncio.to_thread(_describe, broker, groups)
    finally:
        await member.stop()

    ours = {(r.group, r.topic, r.partition): r for r in rows if r.topic in (topic, other)}
    committed = {key: (r.committed, r.end, r.raw_lag) for key, r in ours.items() if not r.no_commit}
    # Every committed partition: exactly the tool's CURRENT-OFFSET, LOG-END-OFFSET and LAG.
    assert committed == {key: numbers for key, numbers in tool.items() if numbers[0] is not None}
    assert {key[0] for key in committed} == set(groups)
    assert sum(lag for _, _, lag in committed.values()) == 0 + 3 + 0 + 8 + 3 + 0 + 5
    # The live member's uncommitted partitions: the tool shows "-", we show NO_COMMIT with the
    # same LOG-END-OFFSET and the log from its start as lag.
    dashes = {key: end for key, (offset, end, _) in tool.items() if offset is None}
    assert sorted(dashes) == sorted(
        [(live, topic, p) for p in (1, 2, 3)] + [(live, other, p) for p in range(4)]
    )
    for key, end in dashes.items():
        row = ours[key]
        assert (row.no_commit, row.end, row.committed, row.lag) == (True, end, 0, end)
    # The stopped group with half its partitions committed: the tool leaves 2 and 3 out (no
    # member), we list them.
    assert sorted(p for (g, _, p), r in ours.items() if g == partial and r.no_commit) == [2, 3]
    assert [(ours[(partial, topic, p)].end, ours[(partial, topic, p)].lag) for p in (2, 3)] == [
        (3, 3),
        (9, 9),
    ]
    assert sorted(ours) == sorted(
        [(g, topic, p) for g in groups for p in range(4)] + [(live, other, p) for p in range(4)]
    )


async def test_one_lag_run_without_group_lists_every_group_and_shows_stop(
    broker: Broker, unique_prefix: str, make_settings: Callable[..., Settings]
) -> None:
    _needs_apache_kafka(broker)
    topic = f"{unique_prefix}.events"
    stopped, current = f"{unique_prefix}.stopped", f"{unique_prefix}.current"
    await _produce(broker, topic, {0: 10})
    await _commit_only(broker, stopped, {TopicPartition(topic, 0): 4})
    await _commit_only(broker, current, {TopicPartition(topic, 0): 10})
    settings = make_settings(lag_window_seconds=WINDOW, lag_include=rf"{unique_prefix}\..*")
    await asyncio.sleep(WINDOW + 0.5)  # the stopped group's last commit is older than the window

    out = io.StringIO()
    code = await asyncio.to_thread(run_lag, settings, out=out)
    table = out.getvalue()
    assert code == 0, table
    print(table)
    lines = table.splitlines()
    # The deployment's own groups (no commits here) and both discovered groups, one line each.
    assert f"group {settings.app_id}: no committed offsets" in lines
    stop_line = next(line for line in lines if line.startswith(f"group {stopped}: "))
    assert stop_line.startswith(f"group {stopped}: STOP, lag 6 messages; {topic}[0]: ")
    assert f"group {current}: OK, lag 0 messages" in lines
    cells = next(
        line.split() for line in lines if line.startswith(stopped) and line.split()[2] == "0"
    )
    assert cells == [stopped, topic, "0", "4", "10", "6", cells[6], "STOP"]

    out = io.StringIO()
    code = await asyncio.to_thread(run_lag, settings, out=out, as_json=True)
    assert code == 0, out.getvalue()
    document = json.loads(out.getvalue())
    statuses = {group["group"]: group["status"] for group in document["groups"]}
    assert statuses[stopped] == "STOP"
    assert statuses[current] == "OK"
    assert statuses[settings.app_id] is None  # watched, but it has no offsets yet
    [row] = [r for r in document["rows"] if r["group"] == stopped and r["partition"] == 0]
    assert (row["committed"], row["end"], row["lag"], row["status"]) == (4, 10, 6, "STOP")


async def test_lag_endpoint_serves_every_watched_group(
    broker: Broker,
    unique_prefix: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    _needs_apache_kafka(broker)
    topic = f"{unique_prefix}.events"
    stopped = f"{unique_prefix}.stopped"
    await _produce(broker, topic, {0: 10, 1: 4})
    await _commit_only(broker, stopped, {TopicPartition(topic, 0): 4})  # 1: no commit
    settings = make_settings(
        lag_window_seconds=WINDOW,
        lag_sample_interval_seconds=0.5,
        lag_include=rf"{unique_prefix}\..*",
    )
    start_worker(settings)

    body: dict[str, object] = {}
    deadline = time.monotonic() + 120
    group: dict[str, object] = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:
        while time.monotonic() < deadline:
            try:
                async with http.get("/lag") as response:
                    assert response.status == 200, await response.text()
                    body = await response.json()
            except aiohttp.ClientConnectionError:
                body = {}  # the worker's web server is not up yet
            groups = {g["group"]: g for g in body.get("groups", [])}  # type: ignore[attr-defined]
            group = groups.get(stopped, {})
            if group.get("status") == "STOP":
                break
            await asyncio.sleep(0.5)
    assert group.get("status") == "STOP", body
    assert {"total", "partitions", "groups"} <= set(body)
    names = [g["group"] for g in body["groups"]]  # type: ignore[attr-defined]
    assert names[:2] == [settings.app_id, settings.prediction_workers_group]  # own, always
    assert str(group["reason"]).startswith(f"{topic}[0] STOP: 6 behind and no commit for")
    assert group["lag"] == 6 + 4
    partitions = {p["partition"]: p for p in group["partitions"]}  # type: ignore[attr-defined]
    first, second = partitions[0], partitions[1]
    assert (first["committed"], first["end"], first["lag"], first["status"]) == (4, 10, 6, "STOP")
    assert first["lag_seconds"] > WINDOW
    assert (second["committed"], second["log_start"], second["end"], second["lag"]) == (
        None,
        0,
        4,
        4,
    )
    assert second["status"] == "NO_COMMIT"


async def test_groups_sharing_partitions_at_other_offsets_keep_the_probe_assigned(
    broker: Broker, unique_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two groups on one topic, one of them on only half of it at other offsets: the probe needs
    # two rounds a sample. It used to reassign its consumer for each round (every sample of a
    # worker's groups: its app group and the prediction trigger listener share phase-triggers),
    # resetting the fetcher and logging aiokafka's subscription table twice every 5 s.
    _needs_apache_kafka(broker)
    topic = f"{unique_prefix}.shared"
    whole, half = f"{unique_prefix}.whole", f"{unique_prefix}.half"
    await _produce(broker, topic, {0: 5, 1: 5, 2: 5, 3: 5})
    tps = [TopicPartition(topic, p) for p in range(4)]
    await _commit_only(broker, whole, dict.fromkeys(tps, 1))
    await _commit_only(broker, half, {tps[0]: 3, tps[1]: 3})
    async with LagSampler(KafkaEndpoint(broker.bootstrap)) as sampler:
        await sampler.sample([whole, half])
        with caplog.at_level(logging.INFO, logger="aiokafka.consumer.subscription_state"):
            rows = await sampler.sample([whole, half])
    reassigned = [r for r in caplog.records if r.name == "aiokafka.consumer.subscription_state"]
    assert reassigned == [], [r.getMessage() for r in reassigned]
    lags = {(r.group, r.partition): (r.lag, r.no_commit) for r in rows if r.topic == topic}
    # The half group's other partitions have no commit: the log from its start is their lag.
    assert lags == {(whole, p): (4, False) for p in range(4)} | {
        (half, 0): (2, False),
        (half, 1): (2, False),
        (half, 2): (5, True),
        (half, 3): (5, True),
    }
