"""Benchmark: one prediction batch end to end, from the coordinator's start to rows in BigQuery.

Runs with no arguments: Tansu (``bench.services.bench_broker``) unless ``PHASEFLOW_BROKER_URL`` is
set, and an ephemeral BigQuery emulator unless ``PHASEFLOW_BIGQUERY_ENDPOINT`` is set. The batch
is the issue's: 450 players x 5 lines x 5 systems = 11,250 predictions (the systems the default
registry enables; the figures say how many that is). One run:

1. seed two dates of 450 players whose books are re-priced to 5 distinct half-point lines each;
2. start one ``phaseflow worker`` (coordinator, prediction workers and the BigQuery sink) and wait
   until it is ready and the sink owns its partitions;
3. per date, one after the other on the same worker (the first batch is the first work the
   process does, the second shows it warm): the clock starts when the coordinator's ``start``
   command (what ``phaseflow predict`` sends) is acknowledged and stops when
   ``player_prop_predictions`` holds every (player, system, line) row of that date; the phase-5
   completion time is reported too.

Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from google.cloud import bigquery

from bench.services import bench_bigquery, bench_broker, worker_settings
from phaseflow.agents.predictions.batch_state import PROCESSOR
from phaseflow.agents.predictions.messages import make_command
from phaseflow.agents.predictions.systems import enabled_systems
from phaseflow.agents.predictions.tables import GAME_SUMMARY, PROP_LINES, UPCOMING_CONTEXT
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseCompletion
from phaseflow.sinks.merge_sql import TARGET_TABLE
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.bigquery_clients import (
    RetryPolicy,
    ensure_dataset,
    make_bigquery_client,
)
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import SeedData, ensure_tables, generate, insert_rows

PROJECT: Final = "bench-e2e"
PLAYERS: Final = 450
LINES_PER_PLAYER: Final = 5
ISSUE_SYSTEMS: Final = 5
ISSUE_PREDICTIONS: Final = PLAYERS * LINES_PER_PLAYER * ISSUE_SYSTEMS  # 11,250
TARGET_SECONDS: Final = 20.0
TIMEOUT: Final = 30.0
GIVE_UP_SECONDS: Final = 300.0


def slate(day: date, lines_per_player: int) -> SeedData:
    """The standard synthetic slate, with every player's books re-priced to
    ``lines_per_player`` distinct half-point lines around the player's mean."""
    data = generate(day, players=PLAYERS)
    template = data.lines[0]
    games = {row["player_lookup"]: row["game_id"] for row in data.context}
    lines: list[dict[str, Any]] = []
    for player in data.players:
        base = max(0.5, int(player.points_mean) - lines_per_player // 2 + 0.5)
        for book in range(lines_per_player):
            row = dict(template)
            row.update(
                player_lookup=player.player_lookup,
                game_id=games[player.player_lookup],
                bookmaker=f"book{book}",
                points_line=f"{base + book:.1f}",
            )
            lines.append(row)
    return SeedData(data.game_date, data.players, data.context, lines, data.history)


def seed_slate(client: bigquery.Client, dataset: str, data: SeedData) -> None:
    ensure_dataset(
        client, dataset, timeout=TIMEOUT, retry=RetryPolicy(deadline_seconds=TIMEOUT).sync()
    )
    ensure_tables(
        client, dataset, timeout=TIMEOUT, retry=RetryPolicy(deadline_seconds=TIMEOUT).sync()
    )
    for table, rows in (
        (UPCOMING_CONTEXT, data.context),
        (PROP_LINES, data.lines),
        (GAME_SUMMARY, data.history),
    ):
        insert_rows(
            client,
            f"{client.project}.{dataset}.{table}",
            rows,
            timeout=TIMEOUT,
            retry=RetryPolicy(deadline_seconds=TIMEOUT).sync(),
        )


def _scalar(client: bigquery.Client, sql: str) -> int:
    job = client.query(
        sql, timeout=TIMEOUT, retry=RetryPolicy(deadline_seconds=TIMEOUT).sync(), job_retry=None
    )
    return int(next(iter(job.result(timeout=TIMEOUT)))["n"])


def count_rows(client: bigquery.Client, table_id: str, day: date) -> int:
    return _scalar(
        client,
        f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE game_date = '{day.isoformat()}'",  # noqa: S608
    )


def distinct_keys(client: bigquery.Client, table_id: str, day: date) -> int:
    return _scalar(
        client,
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT player_lookup, system_id, line_key "  # noqa: S608
        f"FROM `{table_id}` WHERE game_date = '{day.isoformat()}')",
    )


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
    consumer = kafka_clients.consumer(
        settings,
        settings.topic(TopicName.PHASE_COMPLETIONS),
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


@dataclass(frozen=True)
class Scenario:
    name: str
    day: date


def scenarios(today: date) -> list[Scenario]:
    """The same batch on two dates (the second on a worker that has done one already)."""
    return [Scenario("batch 1", today), Scenario("batch 2", today + timedelta(days=1))]


async def run_batch(
    settings: Settings, client: bigquery.Client, table_id: str, day: date, expected: int
) -> dict[str, Any]:
    """Send the start command; time until ``expected`` rows of ``day`` are in ``table_id``."""
    async with SideProducer(settings) as side:
        command = make_command(
            "start", day, issued_at=datetime.now(UTC), source="cli", requested_by="bench"
        )
        started = time.monotonic()
        await side.send(TopicName.PREDICTION_PROGRESS, command.key, encode(command))
    completion = asyncio.create_task(completion_seconds(settings, day, started))
    rows = 0
    deadline = started + GIVE_UP_SECONDS
    while rows < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        rows = await asyncio.to_thread(count_rows, client, table_id, day)
    merged = time.monotonic() - started
    if rows < expected:
        completion.cancel()
        raise TimeoutError(f"{rows} of {expected} rows after {merged:.0f} s")
    done = await completion
    return {
        "seconds_start_to_merged": round(merged, 2),
        "seconds_start_to_completion": None if done is None else round(done, 2),
        "rows_in_bigquery": await asyncio.to_thread(count_rows, client, table_id, day),
        "distinct_keys": await asyncio.to_thread(distinct_keys, client, table_id, day),
    }


def main() -> dict[str, Any]:
    systems = len(enabled_systems(load_registry(None)))
    # Recent dates: older ones are outside the trigger listener's and coordinator's retention.
    plans = scenarios(datetime.now(UTC).date())
    slates = [slate(plan.day, LINES_PER_PLAYER) for plan in plans]
    with (
        bench_broker() as broker,
        bench_bigquery(PROJECT) as endpoint,
        tempfile.TemporaryDirectory() as workdir,
    ):
        settings = worker_settings(
            broker,
            Path(workdir),
            log_level="INFO",  # the sink's assignment is read from the log
            bigquery_endpoint=endpoint,
            bigquery_project=PROJECT,
            bigquery_dataset=f"bench_{uuid.uuid4().hex[:8]}",
            sink_batch_rows=2500,
            sink_flush_seconds=0.5,
            bigquery_requests_per_second=100,
        )
        client = make_bigquery_client(settings)
        runs: list[dict[str, Any]] = []
        try:
            for data in slates:
                seed_slate(client, settings.bigquery_dataset, data)
            asyncio.run(ensure_topics(settings))
            with WorkerProcess(settings, Path(workdir) / "worker.log") as worker:
                worker.wait_ready(timeout=180)
                wait_sink_assigned(worker, f"{settings.app_id}.bigquery-predictions-sink")
                table_id = f"{client.project}.{settings.bigquery_dataset}.{TARGET_TABLE}"
                for plan, data in zip(plans, slates, strict=True):
                    expected = len(data.lines) * systems
                    timing = asyncio.run(run_batch(settings, client, table_id, plan.day, expected))
                    seconds = timing["seconds_start_to_merged"]
                    runs.append(
                        {
                            "scenario": plan.name,
                            "lines": len(data.lines),
                            "predictions": expected,
                            **timing,
                            "predictions_per_second": round(expected / seconds, 1),
                            "ms_per_prediction": round(1000 * seconds / expected, 3),
                        }
                    )
        finally:
            client.close()  # type: ignore[no-untyped-call]
    figures: dict[str, Any] = {
        "broker": broker.kind,
        "players": PLAYERS,
        "lines_per_player": LINES_PER_PLAYER,
        "systems": systems,
        "issue_predictions": ISSUE_PREDICTIONS,
        "target_seconds": TARGET_SECONDS,
        "best_seconds_start_to_merged": min(run["seconds_start_to_merged"] for run in runs),
        "runs": runs,
    }
    print(f"prediction batch end to end on {broker.kind} + BigQuery emulator, one worker")
    print(
        f"{PLAYERS} players x {LINES_PER_PLAYER} lines x {systems} systems = "
        f"{PLAYERS * LINES_PER_PLAYER * systems:,} predictions per batch "
        f"(the issue's batch: {ISSUE_PREDICTIONS:,})"
    )
    header = ("scenario", "predictions", "rows", "keys", "to compl. s", "to merged s", "pred/s")
    print("{:<12} {:>11} {:>7} {:>7} {:>11} {:>11} {:>8}".format(*header))
    for run in runs:
        print(
            f"{run['scenario']:<12} {run['predictions']:>11,} {run['rows_in_bigquery']:>7,} "
            f"{run['distinct_keys']:>7,} {run['seconds_start_to_completion']!s:>11} "
            f"{run['seconds_start_to_merged']:>11.2f} {run['predictions_per_second']:>8.1f}"
        )
    slowest = max(run["seconds_start_to_merged"] for run in runs)
    verdict = "met" if slowest < TARGET_SECONDS else "missed"
    print(f"target: {ISSUE_PREDICTIONS:,} predictions merged < {TARGET_SECONDS:g} s: {verdict}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
