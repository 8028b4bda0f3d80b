"""Benchmark: one prediction batch end to end, from the coordinator's start to rows in BigQuery.

Runs with no arguments: Tansu (``bench.services.bench_broker``) unless ``PHASEFLOW_BROKER_URL`` is
set, and an ephemeral BigQuery emulator unless ``PHASEFLOW_BIGQUERY_ENDPOINT`` is set. One run:

1. seed a slate of 450 players in which every player has exactly 5 distinct prop lines (the
   standard seed gives ~2.6; five books are re-priced to five different half points);
2. start one ``phaseflow worker`` (coordinator, prediction workers and the BigQuery sink) and wait
   until it is ready and the sink owns its partitions;
3. clock starts: send the coordinator's ``start`` command (what ``phaseflow predict`` sends);
4. clock stops when ``player_prop_predictions`` holds every (player, system, line) key.

The issue sizes the batch as 450 players x 5 lines x 5 systems = 11,250 predictions; phaseflow
ships 2 systems, so a run produces 450 x 5 x 2 = 4,500. The table reports that count, the
per-prediction rate, and a linear extrapolation to 11,250 (an estimate, not a measurement).
Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from google.cloud import bigquery

from agents.predictions.coordinator import PROCESSOR
from agents.predictions.messages import make_command
from agents.predictions.systems import enabled_systems
from bench.services import bench_broker
from models.codec import EventDecodeError, decode, encode
from models.events import PhaseCompletion
from sinks.bigquery_client import ensure_dataset, make_bigquery_client
from sinks.merge_sql import TARGET_TABLE
from sinks.retry import library_retry
from streams.local.bigquery_emulator import BigQueryEmulator
from streams.local.ports import free_port
from streams.local.worker_process import WorkerProcess
from streams.registry import load_registry
from streams.seed import (
    GAME_SUMMARY,
    PROP_LINES,
    UPCOMING_CONTEXT,
    SeedData,
    ensure_tables,
    generate,
    insert_rows,
)
from streams.settings import Settings
from streams.side_producer import SideProducer
from streams.topics import TopicName, ensure_topics

PROJECT: Final = "bench-e2e"
PLAYERS: Final = 450
LINES_PER_PLAYER: Final = 5
ISSUE_SYSTEMS: Final = 5
ISSUE_PREDICTIONS: Final = PLAYERS * LINES_PER_PLAYER * ISSUE_SYSTEMS  # 11,250
TARGET_SECONDS: Final = 20.0
TIMEOUT: Final = 30.0
GIVE_UP_SECONDS: Final = 300.0


def five_line_slate(day: date) -> SeedData:
    """The standard synthetic slate, with each player's books re-priced to 5 distinct lines."""
    data = generate(day, players=PLAYERS)
    template = {row["player_lookup"]: row for row in data.lines}
    games = {row["player_lookup"]: row["game_id"] for row in data.context}
    means = {p.player_lookup: p.points_mean for p in data.players}
    lines: list[dict[str, Any]] = []
    for player, game_id in games.items():
        base = max(0.5, int(means[player]) - 2 + 0.5)
        for index in range(LINES_PER_PLAYER):
            row = dict(template.get(player) or next(iter(template.values())))
            row.update(
                player_lookup=player,
                game_id=game_id,
                bookmaker=f"book{index}",
                points_line=f"{base + index:.1f}",
            )
            lines.append(row)
    return SeedData(data.game_date, data.players, data.context, lines, data.history)


def seed_slate(client: bigquery.Client, dataset: str, data: SeedData) -> None:
    ensure_dataset(client, dataset, TIMEOUT)
    ensure_tables(client, dataset, timeout=TIMEOUT)
    for table, rows in (
        (UPCOMING_CONTEXT, data.context),
        (PROP_LINES, data.lines),
        (GAME_SUMMARY, data.history),
    ):
        insert_rows(client, f"{client.project}.{dataset}.{table}", rows, timeout=TIMEOUT)


def count_rows(client: bigquery.Client, table_id: str) -> int:
    job = client.query(
        f"SELECT COUNT(*) AS n FROM `{table_id}`",  # noqa: S608 -- our own table
        timeout=TIMEOUT,
        retry=library_retry(TIMEOUT),
        job_retry=None,
    )
    return int(next(iter(job.result(timeout=TIMEOUT)))["n"])


def distinct_keys(client: bigquery.Client, table_id: str) -> int:
    job = client.query(
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT game_date, player_lookup, system_id, "  # noqa: S608
        f"line_key FROM `{table_id}`)",
        timeout=TIMEOUT,
        retry=library_retry(TIMEOUT),
        job_retry=None,
    )
    return int(next(iter(job.result(timeout=TIMEOUT)))["n"])


@contextmanager
def bench_bigquery() -> Iterator[str]:
    """The emulator's endpoint: ``PHASEFLOW_BIGQUERY_ENDPOINT`` or an ephemeral emulator."""
    external = os.environ.get("PHASEFLOW_BIGQUERY_ENDPOINT")
    if external:
        yield external
        return
    with BigQueryEmulator(PROJECT) as emulator:
        yield emulator.endpoint


def wait_sink_assigned(worker: WorkerProcess, group: str, timeout: float = 120.0) -> None:
    """Until the worker's log shows the sink group's partition assignment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"for group {group}" in worker.tail(lines=100_000):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the sink never got its partitions:\n{worker.tail()}")


async def completion_seconds(settings: Settings, day: date, started: float) -> float | None:
    """Seconds from ``started`` to the phase-5 completion of ``day`` (None: none in time)."""
    consumer = AIOKafkaConsumer(
        settings.topic(TopicName.PHASE_COMPLETIONS),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        completion = decode(PhaseCompletion, record.value or b"")
                    except EventDecodeError:
                        continue
                    if completion.processor_name == PROCESSOR and completion.game_date == day:
                        return time.monotonic() - started
        return None
    finally:
        await consumer.stop()


async def run_batch(
    settings: Settings, client: bigquery.Client, table_id: str, day: date, expected: int
) -> dict[str, Any]:
    """Send the start command; time until ``expected`` rows are in ``table_id``."""
    async with SideProducer(settings) as side:
        command = make_command(
            "start", day, issued_at=datetime.now(UTC), source="bench", requested_by="bench"
        )
        started = time.monotonic()
        await side.send(TopicName.PREDICTION_PROGRESS, command.key, encode(command))
    completion = asyncio.create_task(completion_seconds(settings, day, started))
    rows = 0
    polls = 0
    deadline = started + GIVE_UP_SECONDS
    while rows < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        rows = await asyncio.to_thread(count_rows, client, table_id)
        polls += 1
    merged = time.monotonic() - started
    if rows < expected:
        completion.cancel()
        raise TimeoutError(f"{rows} of {expected} rows after {merged:.0f} s")
    return {"seconds": merged, "completion_seconds": await completion, "polls": polls}


def main() -> dict[str, Any]:
    systems = len(enabled_systems(load_registry(None)))
    day = datetime.now(UTC).date()  # recent: older dates are outside the coordinator's retention
    slate = five_line_slate(day)
    expected = PLAYERS * LINES_PER_PLAYER * systems
    with (
        bench_broker() as broker,
        bench_bigquery() as endpoint,
        tempfile.TemporaryDirectory() as workdir,
    ):
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        settings = Settings(
            broker_url=broker.url,
            topic_prefix=prefix,
            app_id=f"{prefix}-app",
            data_dir=Path(workdir) / "worker",
            web_port=free_port(),
            log_level="INFO",  # the sink's assignment is read from the log
            bigquery_endpoint=endpoint,
            bigquery_project=PROJECT,
            bigquery_dataset=f"bench_{uuid.uuid4().hex[:8]}",
            sink_batch_rows=2500,
            sink_flush_seconds=0.5,
            bigquery_requests_per_second=100,
            **broker.settings,
        )
        client = make_bigquery_client(settings)
        try:
            seeded = time.monotonic()
            seed_slate(client, settings.bigquery_dataset, slate)
            seed_seconds = time.monotonic() - seeded
            asyncio.run(ensure_topics(settings))
            with WorkerProcess(settings, Path(workdir) / "worker.log") as worker:
                worker.wait_ready(timeout=180)
                wait_sink_assigned(worker, f"{settings.app_id}.bigquery-predictions-sink")
                table_id = f"{client.project}.{settings.bigquery_dataset}.{TARGET_TABLE}"
                timing = asyncio.run(run_batch(settings, client, table_id, day, expected))
                keys = distinct_keys(client, table_id)
                rows = count_rows(client, table_id)
        finally:
            client.close()  # type: ignore[no-untyped-call]
    seconds = timing["seconds"]
    rate = expected / seconds
    figures: dict[str, Any] = {
        "broker": broker.kind,
        "players": PLAYERS,
        "lines_per_player": LINES_PER_PLAYER,
        "systems": systems,
        "predictions": expected,
        "rows_in_bigquery": rows,
        "distinct_keys": keys,
        "seconds_start_to_merged": round(seconds, 2),
        "seconds_start_to_completion": (
            None if timing["completion_seconds"] is None else round(timing["completion_seconds"], 2)
        ),
        "predictions_per_second": round(rate, 1),
        "ms_per_prediction": round(1000 * seconds / expected, 3),
        "issue_predictions": ISSUE_PREDICTIONS,
        "extrapolated_seconds_for_issue": round(ISSUE_PREDICTIONS / rate, 1),
        "target_seconds": TARGET_SECONDS,
        "seed_seconds": round(seed_seconds, 1),
    }
    print(f"prediction batch end to end on {broker.kind} + BigQuery emulator")
    print(
        f"{PLAYERS} players x {LINES_PER_PLAYER} lines x {systems} systems = {expected:,} "
        f"predictions (the issue's {ISSUE_PREDICTIONS:,} assumes {ISSUE_SYSTEMS} systems; "
        f"{systems} exist)"
    )
    print(f"{'measure':<46} {'value':>10}  target")
    print(f"{'rows in player_prop_predictions':<46} {rows:>10,}  = {expected:,}")
    print(f"{'distinct (date, player, system, line) keys':<46} {keys:>10,}  = {expected:,}")
    completed = figures["seconds_start_to_completion"]
    print(f"{'start -> phase-5 completion (s)':<46} {completed!s:>10}")
    print(f"{'start -> all rows merged in BigQuery (s)':<46} {seconds:>10.2f}")
    print(f"{'predictions/s (start -> merged)':<46} {rate:>10.1f}")
    print(f"{'ms per prediction':<46} {figures['ms_per_prediction']:>10.3f}")
    print(
        f"{'extrapolated to 11,250 predictions (s)':<46} "
        f"{figures['extrapolated_seconds_for_issue']:>10.1f}  < {TARGET_SECONDS:g} (estimate)"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
