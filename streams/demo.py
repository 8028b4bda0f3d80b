"""``phaseflow demo``: the whole path on one machine, with nothing installed beyond the wheel.

Starts the embedded broker (Tansu) and the BigQuery emulator, runs a worker, replays a simulated
game day (every phase's processors report, each trigger starts the next phase), records the run
in BigQuery, prints a summary and stops everything it started.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from phaseflow.sinks.merge_sql import TARGET_TABLE
from phaseflow.streams.core.bigquery_clients import (
    RetryPolicy,
    ensure_dataset,
    make_bigquery_client,
)
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.tansu import TANSU_FAUST_TUNING, TansuBroker
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import seed
from phaseflow.streams.simulation import DayResult, simulate_day

RUNS_TABLE = "phase_triggers"


def _record_in_bigquery(settings: Settings, result: DayResult) -> int:
    """Write the day's triggers to BigQuery and count them back with a query."""
    client = make_bigquery_client(settings)
    try:
        timeout = settings.bigquery_timeout_seconds
        retry = RetryPolicy.from_settings(settings).sync()
        dataset = ensure_dataset(client, settings.bigquery_dataset, timeout=timeout, retry=retry)
        table = bigquery.Table(
            f"{dataset.project}.{dataset.dataset_id}.{RUNS_TABLE}",
            schema=[
                bigquery.SchemaField("game_date", "DATE"),
                bigquery.SchemaField("phase", "INT64"),
                bigquery.SchemaField("reason", "STRING"),
                bigquery.SchemaField("rule", "STRING"),
                bigquery.SchemaField("trigger_id", "STRING"),
                bigquery.SchemaField("triggered_at", "TIMESTAMP"),
            ],
        )
        client.create_table(table, exists_ok=True, timeout=timeout, retry=retry)
        rows = [
            {
                "game_date": trigger.game_date.isoformat(),
                "phase": trigger.phase,
                "reason": trigger.reason,
                "rule": trigger.rule,
                "trigger_id": trigger.trigger_id,
                "triggered_at": trigger.triggered_at.isoformat(),
            }
            for trigger in result.triggers
        ]
        errors = client.insert_rows_json(table, rows, timeout=timeout, retry=retry)
        if errors:
            raise RuntimeError(f"BigQuery insert failed: {errors}")
        query = (
            f"SELECT COUNT(DISTINCT trigger_id) AS n FROM `{table.project}.{table.dataset_id}."  # noqa: S608 - names are ours
            f"{table.table_id}` WHERE game_date = @game_date"
        )
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("game_date", "DATE", result.game_date.isoformat())
            ]
        )
        rows_back = client.query_and_wait(
            query,
            job_config=config,
            api_timeout=timeout,
            wait_timeout=timeout,
            retry=retry,
            job_retry=None,  # type: ignore[arg-type] # the library accepts None
        )
        return int(next(iter(rows_back))["n"])
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _count_predictions(settings: Settings, game_date: date) -> int:
    """Rows of ``game_date`` the prediction sink has merged into BigQuery so far."""
    client = make_bigquery_client(settings)
    try:
        timeout = settings.bigquery_timeout_seconds
        table = f"{settings.bigquery_project}.{settings.bigquery_dataset}.{TARGET_TABLE}"
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("game_date", "DATE", game_date.isoformat())
            ]
        )
        try:
            rows = client.query_and_wait(
                f"SELECT COUNT(*) AS n FROM `{table}` WHERE game_date = @game_date",  # noqa: S608 - our table
                job_config=config,
                api_timeout=timeout,
                wait_timeout=timeout,
                retry=RetryPolicy.from_settings(settings).sync(),
                job_retry=None,  # type: ignore[arg-type] # the library accepts None
            )
            return int(next(iter(rows))["n"])
        except NotFound:
            return 0
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _wait_for_merged_predictions(settings: Settings, game_date: date, timeout: float) -> int:
    """Poll until the sink's row count for the date stops growing (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = _count_predictions(settings, game_date)
        if count > 0 and count == last:
            return count
        last = count
        time.sleep(1.0)
    return max(last, 0)


def _print_summary(
    result: DayResult, stored: int, predictions: int, timings: dict[str, float]
) -> None:
    print()  # noqa: T201
    print(f"phaseflow demo: game day {result.game_date} (overnight mode)")  # noqa: T201
    print(f"{'starts':>6}  {'reason':<8} {'rule':<24} {'after':>8}  completed")  # noqa: T201
    for trigger in sorted(result.triggers, key=lambda t: t.phase):
        after = result.trigger_seconds[trigger.phase]
        print(  # noqa: T201
            f"{trigger.phase:>6}  {trigger.reason:<8} {trigger.rule:<24} {after:>7.2f}s  "
            f"{len(trigger.completed)} processors of phase {trigger.phase - 1}"
        )
    print(  # noqa: T201
        f"triggers fired: {len(result.triggers)} (one per phase 3-6), "
        f"completions sent: {result.completions_sent}, trigger rows in BigQuery: {stored}"
    )
    print(  # noqa: T201
        f"phase 5 ran for real: coordinator, prediction workers and the BigQuery sink merged "
        f"{predictions} predictions into player_prop_predictions"
    )
    print(  # noqa: T201
        "times: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
    )


def run_demo(*, timeout: float = 180.0) -> int:
    """Run the demo; 0 when every phase fired exactly once and predictions reached BigQuery."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    registry = load_registry(None)
    with (
        tempfile.TemporaryDirectory(prefix="phaseflow-demo-") as workdir,
        TansuBroker() as broker,
        BigQueryEmulator(project="phaseflow-demo") as emulator,
    ):
        timings["services up"] = time.monotonic() - started
        settings = Settings(
            broker_url=broker.url,
            topic_prefix="demo",
            app_id="phaseflow-demo",
            bigquery_project="phaseflow-demo",
            bigquery_endpoint=emulator.endpoint,
            # Its Storage Write gRPC port too: the sink then stages with Arrow rows, the default
            # wherever that endpoint is known (docs/bigquery-sink.md), not insertAll.
            bigquery_write_endpoint=emulator.write_endpoint,
            data_dir=Path(workdir) / "worker",
            web_port=free_port(),
            # Tansu holds each group join for half the session timeout (60 s by default).
            kafka_session_timeout_seconds=TANSU_FAUST_TUNING["broker_session_timeout"],
            kafka_heartbeat_interval_seconds=TANSU_FAUST_TUNING["broker_heartbeat_interval"],
        )
        asyncio.run(ensure_topics(settings))
        today = datetime.now(UTC).astimezone(ZoneInfo(settings.pipeline_timezone)).date()
        game_date = today - timedelta(days=1)  # last night's games: overnight mode
        client = make_bigquery_client(settings)
        try:
            seeded = seed(client, settings.bigquery_dataset, game_date)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        timings["seed"] = seeded.seconds
        with WorkerProcess(settings, Path(workdir) / "worker.log") as worker:
            timings["worker ready"] = worker.wait_ready(timeout=timeout)
            result = asyncio.run(
                simulate_day(
                    settings,
                    registry,
                    game_date,
                    today=today,
                    give_up_after=timeout,
                    real_phases=frozenset({5}),  # the real coordinator and workers run phase 5
                )
            )
            timings["game day"] = result.seconds
            predictions = _wait_for_merged_predictions(settings, game_date, timeout=60)
            worker_log = worker.tail()
        stored = _record_in_bigquery(settings, result)
    timings["total"] = time.monotonic() - started
    _print_summary(result, stored, predictions, timings)
    phases = sorted(t.phase for t in result.triggers)
    if not (result.finished and phases == [3, 4, 5, 6] and stored == len(phases) and predictions):
        print("demo FAILED: expected one trigger for each of phases 3-6 and merged predictions")  # noqa: T201
        print(worker_log)  # noqa: T201
        return 1
    return 0
