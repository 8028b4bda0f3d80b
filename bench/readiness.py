"""Benchmark: completion events/s through the readiness agent vs raw aiokafka consumption of the
same events, and trigger latency from the last needed completion to a readable trigger.

Runs with no arguments on the embedded broker (or ``PHASEFLOW_BROKER_URL``). One run:
1. produce N completion events (many dates, every phase, 10 % duplicates) to a fresh topic;
2. raw: a group-less aiokafka consumer reads and orjson-decodes all of them (the ceiling);
3. agent: a ``phaseflow worker`` started on the backlog; time from its ready line until its
   committed offsets reach the end of the topic; beside it a bare Faust agent (no work, and one
   table write per event) and the peer, a Quix Streams app doing a read-modify-write of a
   per-date dict in its State (``bench.quix_peer``; at_least_once and exactly_once), Faust's
   consumer without its stream (a task draining a subscribed channel's queue), each
   on the same topic; and how many changelog records the agent and the peer wrote;
4. backfill: 365 dates x 40 completions (every phase), shuffled, 10 % duplicates, through a
   fresh worker; wall time from its ready line until it settled with exactly one trigger per
   (date, phase) that fires (read back from the triggers topic, compared with what an
   in-process processor fires for the same records);
5. latency: with a fresh idle worker, for each of K new dates publish phase 2's required
   completions and time from the last one's acknowledgement to its trigger being read; once
   per guarantee the broker has, with Faust's fixed 1.5 s fetch wait and with the configured
   ``kafka_fetch_wait_seconds``, and under exactly_once also with the periodic commit only
   (``kafka_commit_after_outputs`` off, as before it existed), side by side.
``python -m bench.readiness throughput|backfill|latency`` runs only that part.
Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import TopicPartition

from bench.services import BenchBroker, bench_broker, worker_settings
from phaseflow.models.codec import encode
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, make_completion, phase_completions

EVENTS: Final = 40_000
LATENCY_SAMPLES: Final = 300
#: faust-streaming's own consumer fetch wait, measured beside the configured one.
FAUST_FETCH_WAIT_SECONDS: Final = 1.5
TARGET_RATIO: Final = 0.3
#: Issue 14: the readiness agent against the bare Faust agent (no work) in the same run.
TARGET_RATIO_TO_FAUST: Final = 0.7
BACKFILL_DATES: Final = 365
#: Per date: every completion of phases 2-6 and the first 25 of phase 1 (which fires nothing).
BACKFILL_PER_DATE: Final = 40


def target_p99_ms(broker_kind: str) -> float:
    """Issue 14's trigger latency target: Apache Kafka answers a waiting fetch when a record
    arrives; the embedded broker holds it for the whole fetch wait."""
    return 300.0 if broker_kind == "tansu" else 150.0


PHASE2_REQUIRED: Final = ("p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores")


def backlog(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) completion records: whole game days, with duplicates mixed in."""
    registry = load_registry(None)
    today = date(2026, 6, 1)
    records: list[tuple[bytes, bytes]] = []
    day = date(2025, 1, 1)
    while len(records) < count:
        for phase in (1, 2, 3, 4, 5, 6):
            for event in phase_completions(registry, day, phase, today=today):
                records.append((event.key.encode(), encode(event)))
        day += timedelta(days=1)
    rng = random.Random(42)
    records = records[: int(count * 0.9)]
    records += rng.sample(records, count - len(records))  # retried publishes
    return records


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    async with CompletionPublisher(settings, linger_ms=5, max_batch_size=256 * 1024) as out:
        producer = out._producer
        futures = [
            await producer.send(settings.topic(TopicName.PHASE_COMPLETIONS), value=v, key=k)
            for k, v in records
        ]
        await asyncio.gather(*futures)


async def raw_rate(settings: Settings, count: int) -> float:
    consumer = kafka_clients.consumer(
        settings,
        settings.topic(TopicName.PHASE_COMPLETIONS),
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value or b"{}")
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def committed_everything(settings: Settings) -> bool:
    topic = settings.topic(TopicName.PHASE_COMPLETIONS)
    probe = kafka_clients.consumer(
        settings,
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        ends = await probe.end_offsets(tps)
        for tp in tps:
            if (await probe.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await probe.stop()


def faust_baseline_rate(
    settings: Settings, count: int, mode: str, guarantee: str = "at_least_once"
) -> float:
    """events/s of a bare Faust agent (``noop`` or one ``table`` write per event), under
    ``guarantee`` (bench.faust_baseline)."""
    env = {
        **os.environ,
        **settings_to_env(settings),
        "BASELINE_MODE": mode,
        "BASELINE_GUARANTEE": guarantee,
        "BASELINE_TOPIC": settings.topic(TopicName.PHASE_COMPLETIONS),
        "BASELINE_COUNT": str(count),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.faust_baseline", "worker", "-l", "warn"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = re.search(r"baseline events/s ([0-9.]+)", done.stdout + done.stderr)
    if found:
        return float(found.group(1))
    raise RuntimeError(
        f"faust baseline ({mode}, {guarantee}) printed no rate:\n{done.stderr[-2000:]}"
    )


def quix_rate(settings: Settings, count: int, guarantee: str, workdir: Path) -> float:
    """events/s of the Quix Streams peer (bench.quix_peer) over the same topic, start to done."""
    group = f"{settings.topic_prefix}-quix-{guarantee}"
    env = {
        **os.environ,
        "QUIX_BROKER": settings.bootstrap_servers,
        "QUIX_TOPIC": settings.topic(TopicName.PHASE_COMPLETIONS),
        "QUIX_COUNT": str(count),
        "QUIX_GUARANTEE": guarantee,
        "QUIX_GROUP": group,
        "QUIX_STATE_DIR": str(workdir / f"quix-{guarantee}"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.quix_peer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = re.search(r"quix events/s ([0-9.]+)", done.stdout)
    if done.returncode == 0 and found:
        return float(found.group(1))
    raise RuntimeError(f"quix peer ({guarantee}) printed no rate:\n{done.stderr[-2000:]}")


async def changelog_records(settings: Settings, marker: str) -> int:
    """Records in every changelog topic whose name contains ``marker`` (end minus start
    offsets): how many table writes reached the broker."""
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        # The consumer's own metadata covers only what it is assigned; ask for every topic.
        cluster = await consumer._client.fetch_all_metadata()
        topics = [t for t in cluster.topics() if marker in t and "changelog" in t]
        if not topics:
            raise RuntimeError(f"no changelog topic with {marker!r} in its name")
        tps = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in cluster.partitions_for_topic(topic) or ()
        ]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


def agent_rate(settings: Settings, count: int, log: Path) -> float:
    with WorkerProcess(settings, log) as worker:
        worker.wait_ready(timeout=180)
        started = time.perf_counter()
        while not asyncio.run(committed_everything(settings)):
            time.sleep(0.2)
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"agent did not finish the backlog:\n{worker.tail()}")
        return count / (time.perf_counter() - started)


def backfill_records(dates: int = BACKFILL_DATES) -> list[tuple[bytes, bytes]]:
    """A backfill's completions: ``dates`` dates x BACKFILL_PER_DATE, shuffled, plus 10 %
    re-sent duplicates mixed in."""
    registry = load_registry(None)
    today = date(2026, 6, 1)
    records: list[tuple[bytes, bytes]] = []
    for offset in range(dates):
        day = date(2024, 1, 1) + timedelta(days=offset)
        events = [
            event
            for phase in (1, 2, 3, 4, 5, 6)
            for event in phase_completions(registry, day, phase, today=today)
        ]
        fired_by_others = [event for event in events if event.phase != 1]
        phase1 = [event for event in events if event.phase == 1]
        kept = fired_by_others + phase1[: BACKFILL_PER_DATE - len(fired_by_others)]
        records += [(event.key.encode(), encode(event)) for event in kept]
    rng = random.Random(7)
    rng.shuffle(records)
    duplicates = rng.sample(records, len(records) // 10)
    for record in duplicates:
        records.insert(rng.randrange(len(records) + 1), record)
    return records


class _Collected:
    """A publisher that keeps what the in-process processor sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[TopicName, str, bytes]] = []

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))


async def expected_triggers(records: list[tuple[bytes, bytes]]) -> set[tuple[date, int]]:
    """The (date, phase) pairs a processor fires for ``records`` in this order (records of a
    date share a partition, so the worker sees each date's records in this order too)."""
    from phaseflow.agents.readiness import ReadinessProcessor
    from phaseflow.streams.core.clock import SystemClock
    from phaseflow.streams.core.envelope import Origin

    processor = ReadinessProcessor(
        registry=load_registry(None),
        table={},
        publisher=_Collected(),
        clock=SystemClock(),
        pipeline_timezone=Settings.model_fields["pipeline_timezone"].default,
        max_message_bytes=Settings.model_fields["max_message_bytes"].default,
    )
    fired: set[tuple[date, int]] = set()
    for offset, (key, value) in enumerate(records):
        origin = Origin(topic="backfill", partition=0, offset=offset, key=key)
        fired |= {(t.game_date, t.phase) for t in await processor.handle(value, origin)}
    return fired


def backfill_run(broker: BenchBroker, workdir: Path) -> dict[str, Any]:
    """The backfill through a fresh worker: seconds from its ready line until every expected
    trigger is readable, then a quiet period in which no second trigger may appear."""
    records = backfill_records()
    expected = asyncio.run(expected_triggers(records))
    home = workdir / "backfill"
    home.mkdir()
    settings = worker_settings(broker, home, stem="backfill")
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, records))

    async def read_triggers(started: float) -> tuple[list[tuple[date, int]], float]:
        async with TriggerReader(settings) as reader:
            found = await reader.read_until(
                lambda got: {(t.game_date, t.phase) for t in got} >= expected, give_up_after=600
            )
            settled = time.perf_counter() - started
            # Anything after that is a second trigger (or one that should not be there).
            found += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=5)
        return [(t.game_date, t.phase) for t in found], settled

    with WorkerProcess(settings, workdir / "backfill.log") as worker:
        worker.wait_ready(timeout=180)
        triggers, settled = asyncio.run(read_triggers(time.perf_counter()))
        if set(triggers) != expected:
            raise RuntimeError(
                f"backfill fired {len(set(triggers))} (date, phase) pairs, expected "
                f"{len(expected)}:\n{worker.tail()}"
            )
    repeated = len(triggers) - len(set(triggers))
    return {
        "completions": len(records),
        "dates": BACKFILL_DATES,
        "triggers_expected": len(expected),
        "triggers_read": len(triggers),
        "repeated_triggers": repeated,
        "settled_seconds": round(settled, 1),
    }


@dataclass(frozen=True)
class LatencySample:
    """One trigger's latency and where it went: ``decided_ms`` from the last completion's
    acknowledgement to the worker's ``triggered_at`` (the worker's fetch and its handling),
    ``delivered_ms`` from there until the reader had it (produce, exactly_once's transaction
    commit, the reader's fetch). Both clocks are this machine's."""

    total_ms: float
    decided_ms: float
    delivered_ms: float


async def trigger_latencies(settings: Settings, samples: int) -> list[LatencySample]:
    latencies = []
    first_day = date(2030, 1, 1)
    async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
        await reader.read_until(lambda _: False, give_up_after=0, quiet_for=1)  # skip old ones
        for index in range(samples):
            day = first_day + timedelta(days=index)
            now = datetime.now(UTC)
            for name in PHASE2_REQUIRED:
                await publisher.publish(make_completion(name, day, 2, at=now))
            sent, sent_wall = time.perf_counter(), time.time()
            found = await reader.read_until(
                lambda got, day=day: any(t.game_date == day for t in got), give_up_after=30
            )
            read, read_wall = time.perf_counter(), time.time()
            trigger = next((t for t in found if t.game_date == day), None)
            if trigger is None:
                raise TimeoutError(f"no trigger for {day}")
            decided = trigger.triggered_at.timestamp()
            latencies.append(
                LatencySample(
                    total_ms=(read - sent) * 1000,
                    decided_ms=(decided - sent_wall) * 1000,
                    delivered_ms=(read_wall - decided) * 1000,
                )
            )
    return latencies


def latency_runs(
    broker: BenchBroker, workdir: Path, samples: int = LATENCY_SAMPLES
) -> list[dict[str, Any]]:
    """Trigger latency for each guarantee the broker has, with Faust's fetch wait and with the
    configured one, and under exactly_once also with the periodic commit only (a trigger is
    readable only once its transaction commits; the default commits right after the batch
    that sent it); one fresh worker (and topics) each, in this one run."""
    configured = Settings.model_fields["kafka_fetch_wait_seconds"].default
    commit = Settings.model_fields["kafka_commit_interval_seconds"].default
    configs = [
        ("at_least_once", FAUST_FETCH_WAIT_SECONDS, commit, True),
        ("at_least_once", configured, commit, True),
    ]
    if broker.kind != "tansu":
        configs += [
            ("exactly_once", FAUST_FETCH_WAIT_SECONDS, commit, True),
            ("exactly_once", configured, commit, True),
            ("exactly_once", configured, commit, False),
        ]
    runs: list[dict[str, Any]] = []
    for guarantee, wait, interval, after_outputs in configs:
        name = f"{guarantee}-{wait}-{interval}-{'early' if after_outputs else 'periodic'}"
        home = workdir / name
        home.mkdir()
        settings = worker_settings(
            broker,
            home,
            stem="latency",
            processing_guarantee=guarantee,
            kafka_fetch_wait_seconds=wait,
            kafka_commit_interval_seconds=interval,
            kafka_commit_after_outputs=after_outputs,
        )
        asyncio.run(ensure_topics(settings))
        log = workdir / f"latency-{name}.log"
        with WorkerProcess(settings, log) as worker:
            worker.wait_ready(timeout=180)
            latencies = asyncio.run(trigger_latencies(settings, samples))
        totals = [sample.total_ms for sample in latencies]
        decided = [sample.decided_ms for sample in latencies]
        delivered = [sample.delivered_ms for sample in latencies]
        runs.append(
            {
                "guarantee": guarantee,
                "fetch_wait_s": wait,
                "commit_interval_s": interval,
                "commit_after_outputs": after_outputs,
                "samples": len(latencies),
                "p50_ms": round(statistics.median(totals), 1),
                "p99_ms": round(percentile(totals, 99), 1),
                "max_ms": round(max(totals), 1),
                "decided_p50_ms": round(statistics.median(decided), 1),
                "decided_p99_ms": round(percentile(decided, 99), 1),
                "delivered_p50_ms": round(statistics.median(delivered), 1),
                "delivered_p99_ms": round(percentile(delivered, 99), 1),
            }
        )
    return runs


def latency_label(run: dict[str, Any]) -> str:
    """``exactly_once, wait 0.1 s, commit 0.1 s`` (``, periodic only`` without the commit
    right after a batch's outputs)."""
    label = (
        f"{run['guarantee']}, wait {run['fetch_wait_s']:g} s, commit {run['commit_interval_s']:g} s"
    )
    if run["guarantee"] == "exactly_once" and not run.get("commit_after_outputs", True):
        label += ", periodic only"
    return label


def print_latency_runs(runs: list[dict[str, Any]]) -> None:
    print(
        f"{'trigger latency (ms)':<56} {'samples':>8} {'p50':>8} {'p99':>8} {'max':>8}"
        f"   {'decided p50/p99':>16} {'delivered p50/p99':>18}"
    )
    for run in runs:
        label = latency_label(run)
        decided = f"{run['decided_p50_ms']}/{run['decided_p99_ms']}"
        delivered = f"{run['delivered_p50_ms']}/{run['delivered_p99_ms']}"
        print(
            f"{label:<56} {run['samples']:>8} {run['p50_ms']:>8} {run['p99_ms']:>8} "
            f"{run['max_ms']:>8}   {decided:>16} {delivered:>18}"
        )


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


QUIX_GUARANTEES: Final = ("at-least-once", "exactly-once")


def throughput_run(broker: BenchBroker, workdir: Path) -> dict[str, Any]:
    """Raw aiokafka, bare Faust, the readiness agent and the Quix peer on one 40,000-event
    topic, one after the other."""
    records = backlog(EVENTS)
    settings = worker_settings(broker, workdir)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, records))
    raw = asyncio.run(raw_rate(settings, len(records)))
    noop = faust_baseline_rate(settings, len(records), "noop")
    # The floor of Faust's exactly-once machinery (the worker's guarantee on Apache Kafka).
    noop_eos = (
        faust_baseline_rate(settings, len(records), "noop", "exactly_once")
        if broker.kind != "tansu"
        else None
    )
    table_write = faust_baseline_rate(settings, len(records), "table")
    # Faust's fetch, decode and delivery without its per-event stream: the floor of a
    # readiness path that left the stream (not built; issue 14 item 4).
    no_stream = faust_baseline_rate(settings, len(records), "queue")
    agent = agent_rate(settings, len(records), workdir / "agent.log")
    agent_changelog = asyncio.run(changelog_records(settings, f"{settings.app_id}-readiness"))
    quix: dict[str, float] = {}
    quix_changelog = 0
    for guarantee in QUIX_GUARANTEES:
        quix[guarantee] = quix_rate(settings, len(records), guarantee, workdir)
    quix_changelog = asyncio.run(
        changelog_records(settings, f"{settings.topic_prefix}-quix-{QUIX_GUARANTEES[0]}")
    )
    return {
        "events": len(records),
        "raw_events_per_s": round(raw),
        "agent_events_per_s": round(agent),
        "ratio": round(agent / raw, 4),
        "faust_noop_events_per_s": round(noop),
        "ratio_to_faust_noop": round(agent / noop, 3),
        "faust_noop_exactly_once_events_per_s": None if noop_eos is None else round(noop_eos),
        "ratio_to_faust_noop_exactly_once": None
        if noop_eos is None
        else round(agent / noop_eos, 3),
        "faust_table_write_events_per_s": round(table_write),
        "ratio_to_faust_table_write": round(agent / table_write, 3),
        "faust_without_stream_events_per_s": round(no_stream),
        "quix_events_per_s": {g.replace("-", "_"): round(rate) for g, rate in quix.items()},
        "ratio_to_quix": {g.replace("-", "_"): round(agent / rate, 3) for g, rate in quix.items()},
        "agent_changelog_records": agent_changelog,
        "quix_changelog_records": quix_changelog,
    }


def print_throughput(figures: dict[str, Any]) -> None:
    raw, noop, agent = (
        figures["raw_events_per_s"],
        figures["faust_noop_events_per_s"],
        figures["agent_events_per_s"],
    )
    print(f"{'measure':<50} {'value':>12}  target")
    print(f"{'raw aiokafka consume + orjson (events/s)':<50} {raw:>12,}")
    print(f"{'bare Faust agent, no work (events/s)':<50} {noop:>12,}")
    noop_eos = figures.get("faust_noop_exactly_once_events_per_s")
    if noop_eos is not None:
        print(f"{'bare Faust agent, no work, exactly_once (events/s)':<50} {noop_eos:>12,}")
    print(
        f"{'bare Faust agent, 1 table write (events/s)':<50} "
        f"{figures['faust_table_write_events_per_s']:>12,}"
    )
    no_stream = figures.get("faust_without_stream_events_per_s")
    if no_stream is not None:
        print(f"{'Faust consumer, no stream: channel queue (events/s)':<50} {no_stream:>12,}")
    print(f"{'readiness agent (events/s)':<50} {agent:>12,}")
    for guarantee, rate in figures["quix_events_per_s"].items():
        print(f"{f'Quix Streams per-date state, {guarantee} (events/s)':<50} {rate:>12,}")
    print(
        f"{'ratio agent / bare Faust agent':<50} {agent / noop:>12.3f}  >= {TARGET_RATIO_TO_FAUST}"
    )
    if noop_eos is not None:
        print(f"{'ratio agent / bare Faust agent, exactly_once':<50} {agent / noop_eos:>12.3f}")
    print(f"{'ratio agent / raw':<50} {agent / raw:>12.3f}  >= {TARGET_RATIO}")
    for guarantee, ratio in figures["ratio_to_quix"].items():
        print(f"{f'ratio agent / Quix Streams {guarantee}':<50} {ratio:>12.3f}")
    print(
        f"{'changelog records: agent / Quix (at_least_once)':<50} "
        f"{figures['agent_changelog_records']:>6,} / {figures['quix_changelog_records']:,}"
    )


def print_backfill(figures: dict[str, Any]) -> None:
    exact = "yes" if figures["repeated_triggers"] == 0 else "NO"
    print(
        f"backfill: {figures['completions']:,} completions ({figures['dates']} dates, shuffled, "
        f"10 % duplicates) settled in {figures['settled_seconds']} s with "
        f"{figures['triggers_expected']:,} (date, phase) triggers; exactly one each: {exact} "
        f"({figures['triggers_read']:,} read)"
    )


def main(parts: list[str]) -> dict[str, Any]:
    """The parts named (throughput, backfill, latency), or all of them."""
    wanted = parts or ["throughput", "backfill", "latency"]
    unknown = set(wanted) - {"throughput", "backfill", "latency"}
    if unknown:
        raise SystemExit(
            f"error: unknown part(s) {sorted(unknown)}; use throughput|backfill|latency"
        )
    figures: dict[str, Any] = {}
    with bench_broker() as broker, tempfile.TemporaryDirectory() as workdir:
        figures["broker"] = broker.kind
        if "throughput" in wanted:
            figures.update(throughput_run(broker, Path(workdir)))
        if "backfill" in wanted:
            figures["backfill"] = backfill_run(broker, Path(workdir))
        if "latency" in wanted:
            figures["latency"] = latency_runs(broker, Path(workdir))
    print(f"readiness benchmark on {broker.kind}")
    if "throughput" in figures and "events" in figures:
        print(f"{figures['events']:,} completion events, one topic")
    if "events" in figures:
        print_throughput(figures)
    if "backfill" in figures:
        print_backfill(figures["backfill"])
    if "latency" in figures:
        print(f"trigger latency, target p99 <= {target_p99_ms(broker.kind):g} ms")
        print_latency_runs(figures["latency"])
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
