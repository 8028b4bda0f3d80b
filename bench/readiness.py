"""Benchmark: completion events/s through the readiness agent vs raw aiokafka consumption of the
same events, and trigger latency from the last needed completion to a readable trigger.

Runs with no arguments on the embedded broker (or ``PHASEFLOW_BROKER_URL``). One run:
1. produce N completion events (many dates, every phase, 10 % duplicates) to a fresh topic;
2. raw: a group-less aiokafka consumer reads and orjson-decodes all of them (the ceiling);
3. agent: a ``phaseflow worker`` started on the backlog; time from its ready line until its
   committed offsets reach the end of the topic;
4. latency: with a fresh idle worker, for each of K new dates publish phase 2's required
   completions and time from the last one's acknowledgement to its trigger being read; once
   per guarantee the broker has, with Faust's fixed 1.5 s fetch wait and with the configured
   ``kafka_fetch_wait_seconds``, side by side (``python -m bench.readiness latency``: this
   part only).
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


def faust_baseline_rate(settings: Settings, count: int, mode: str) -> float:
    """events/s of a bare Faust agent (``noop`` or one ``table`` write per event)."""
    env = {
        **os.environ,
        **settings_to_env(settings),
        "BASELINE_MODE": mode,
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
    raise RuntimeError(f"faust baseline ({mode}) printed no rate:\n{done.stderr[-2000:]}")


def agent_rate(settings: Settings, count: int, log: Path) -> float:
    with WorkerProcess(settings, log) as worker:
        worker.wait_ready(timeout=180)
        started = time.perf_counter()
        while not asyncio.run(committed_everything(settings)):
            time.sleep(0.2)
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"agent did not finish the backlog:\n{worker.tail()}")
        return count / (time.perf_counter() - started)


async def trigger_latencies(settings: Settings, samples: int) -> list[float]:
    latencies = []
    first_day = date(2030, 1, 1)
    async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
        await reader.read_until(lambda _: False, give_up_after=0, quiet_for=1)  # skip old ones
        for index in range(samples):
            day = first_day + timedelta(days=index)
            now = datetime.now(UTC)
            for name in PHASE2_REQUIRED:
                await publisher.publish(make_completion(name, day, 2, at=now))
            sent = time.perf_counter()
            found = await reader.read_until(
                lambda got, day=day: any(t.game_date == day for t in got), give_up_after=30
            )
            if not any(t.game_date == day for t in found):
                raise TimeoutError(f"no trigger for {day}")
            latencies.append((time.perf_counter() - sent) * 1000)
    return latencies


def latency_runs(
    broker: BenchBroker, workdir: Path, samples: int = LATENCY_SAMPLES
) -> list[dict[str, Any]]:
    """Trigger latency for each guarantee the broker has, with Faust's fetch wait and with the
    configured one, one fresh worker (and topics) each, in this one run."""
    guarantees = ["at_least_once"] if broker.kind == "tansu" else ["at_least_once", "exactly_once"]
    configured = Settings.model_fields["kafka_fetch_wait_seconds"].default
    runs: list[dict[str, Any]] = []
    for guarantee in guarantees:
        for wait in (FAUST_FETCH_WAIT_SECONDS, configured):
            home = workdir / f"{guarantee}-{wait}"
            home.mkdir()
            settings = worker_settings(
                broker,
                home,
                stem="latency",
                processing_guarantee=guarantee,
                kafka_fetch_wait_seconds=wait,
            )
            asyncio.run(ensure_topics(settings))
            log = workdir / f"latency-{guarantee}-{wait}.log"
            with WorkerProcess(settings, log) as worker:
                worker.wait_ready(timeout=180)
                latencies = asyncio.run(trigger_latencies(settings, samples))
            runs.append(
                {
                    "guarantee": guarantee,
                    "fetch_wait_s": wait,
                    "samples": len(latencies),
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p99_ms": round(percentile(latencies, 99), 1),
                    "max_ms": round(max(latencies), 1),
                }
            )
    return runs


def print_latency_runs(runs: list[dict[str, Any]]) -> None:
    print(f"{'trigger latency (ms)':<34} {'samples':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    for run in runs:
        label = f"{run['guarantee']}, fetch wait {run['fetch_wait_s']:g} s"
        print(
            f"{label:<34} {run['samples']:>8} {run['p50_ms']:>8} {run['p99_ms']:>8} "
            f"{run['max_ms']:>8}"
        )


def latency_main() -> dict[str, Any]:
    """Only the trigger latency comparison (``python -m bench.readiness latency``)."""
    with bench_broker() as broker, tempfile.TemporaryDirectory() as workdir:
        runs = latency_runs(broker, Path(workdir))
    print(f"trigger latency on {broker.kind}, target p99 <= {target_p99_ms(broker.kind):g} ms")
    print_latency_runs(runs)
    figures = {"broker": broker.kind, "latency": runs}
    print(json.dumps(figures))
    return figures


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


def main() -> dict[str, Any]:
    records = backlog(EVENTS)
    with bench_broker() as broker, tempfile.TemporaryDirectory() as workdir:
        settings = worker_settings(broker, Path(workdir))
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, records))
        raw = asyncio.run(raw_rate(settings, len(records)))
        noop = faust_baseline_rate(settings, len(records), "noop")
        table_write = faust_baseline_rate(settings, len(records), "table")
        agent = agent_rate(settings, len(records), Path(workdir) / "agent.log")
        runs = latency_runs(broker, Path(workdir))
    figures = {
        "broker": broker.kind,
        "events": len(records),
        "raw_events_per_s": round(raw),
        "agent_events_per_s": round(agent),
        "ratio": round(agent / raw, 4),
        "faust_noop_events_per_s": round(noop),
        "faust_table_write_events_per_s": round(table_write),
        "ratio_to_faust_table_write": round(agent / table_write, 3),
        "latency": runs,
    }
    print(f"readiness benchmark on {broker.kind}, {len(records)} completion events")
    print(f"{'measure':<42} {'value':>12}  target")
    print(f"{'raw aiokafka consume + orjson (events/s)':<42} {raw:>12,.0f}")
    print(f"{'bare Faust agent, no work (events/s)':<42} {noop:>12,.0f}")
    print(f"{'bare Faust agent, 1 table write (events/s)':<42} {table_write:>12,.0f}")
    print(f"{'readiness agent (events/s)':<42} {agent:>12,.0f}")
    print(f"{'ratio agent / raw':<42} {agent / raw:>12.3f}  >= {TARGET_RATIO}")
    print(f"trigger latency, target p99 <= {target_p99_ms(broker.kind):g} ms")
    print_latency_runs(runs)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    if sys.argv[1:] == ["latency"]:
        latency_main()
    else:
        main()
    sys.exit(0)
