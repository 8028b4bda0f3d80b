"""Benchmark: predictions into BigQuery through PredictionSink vs one insert_rows_json per row.

Runs with no arguments: starts an ephemeral BigQuery emulator (unless
``PHASEFLOW_BIGQUERY_ENDPOINT`` is set), then (a) pushes 11,250 predictions (450 players x
5 systems x 5 lines) through :class:`sinks.bigquery_predictions.PredictionSink` (staging inserts
of 500 rows + one MERGE per flush) and counts what landed, and (b) inserts a 300-row sample one
``insert_rows_json`` request per row, as a naive writer would. Reports rows/s for both, side by
side. No broker is needed. Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from google.cloud import bigquery

from models.events import Prediction
from sinks.bigquery_client import make_bigquery_client
from sinks.bigquery_predictions import PredictionSink, prediction_row
from sinks.merge_sql import PREDICTION_SCHEMA
from sinks.retry import library_retry
from streams.local.bigquery_emulator import BigQueryEmulator
from streams.settings import Settings

PROJECT: Final = "bench-sink"
DAY: Final = date(2026, 1, 15)
PLAYERS: Final = 450
SYSTEMS: Final = ("moving_average", "xgb", "ridge", "ensemble", "similarity")
LINES: Final = ("18.5", "20.0", "21.5", "23.0", "24.5")
PER_ROW_SAMPLE: Final = 300
BATCH_ROWS: Final = 2500  # 5 staging requests of 500 rows + 1 MERGE per flush
REQUESTS_PER_SECOND: Final = 100
TARGET_RATIO: Final = 100.0


def predictions() -> list[Prediction]:
    created = datetime(2026, 1, 15, 17, 0, tzinfo=UTC)
    out: list[Prediction] = []
    for i in range(PLAYERS):
        player = f"player{i:03d}"
        for s, system in enumerate(SYSTEMS):
            for line in LINES:
                out.append(
                    Prediction(
                        prediction_id=Prediction.make_id("b1", DAY, player, system, Decimal(line)),
                        game_date=DAY,
                        game_id=f"G{i // 20}",
                        player_lookup=player,
                        system_id=system,
                        current_points_line=Decimal(line),
                        predicted_points=15.0 + (i % 17) + s,
                        confidence_score=55.0 + s,
                        recommendation="OVER",
                        model_version="v1",
                        batch_id="b1",
                        created_at=created + timedelta(microseconds=i),
                    )
                )
    return out


async def _dead_letter(row: Prediction, reason: str) -> None:
    raise RuntimeError(f"unexpected dead letter for {row.key}: {reason}")


def _count(client: bigquery.Client, table_id: str, timeout: float) -> int:
    job = client.query(
        f"SELECT COUNT(*) AS n FROM `{table_id}`",  # noqa: S608 -- our own table
        timeout=timeout,
        retry=library_retry(timeout),
        job_retry=None,
    )
    return int(next(iter(job.result(timeout=timeout)))["n"])


async def _through_sink(settings: Settings, rows: list[Prediction]) -> dict[str, Any]:
    sink = PredictionSink(settings, dead_letter=_dead_letter, max_buffer_rows=len(rows))
    await sink.start()
    began = time.monotonic()
    for row in rows:
        sink.add(row)
    await sink.flush()
    seconds = time.monotonic() - began
    await sink.stop()
    client = make_bigquery_client(settings)
    try:
        landed = await asyncio.to_thread(
            _count, client, sink.table_id, settings.bigquery_timeout_seconds
        )
    finally:
        client.close()
    return {
        "sink_rows": len(rows),
        "sink_seconds": round(seconds, 3),
        "sink_flushes": sink.metrics.flushes,
        "sink_rows_in_table": landed,
        "sink_rows_per_second": round(len(rows) / seconds, 1),
    }


def _per_row(settings: Settings, rows: list[Prediction]) -> dict[str, Any]:
    client = make_bigquery_client(settings)
    timeout = settings.bigquery_timeout_seconds
    try:
        table_id = f"{client.project}.{settings.bigquery_dataset}.per_row_{uuid.uuid4().hex[:8]}"
        client.create_table(bigquery.Table(table_id, list(PREDICTION_SCHEMA)), timeout=timeout)
        now = datetime.now(UTC)
        began = time.monotonic()
        for seq, row in enumerate(rows):
            data = prediction_row(row, flush_id="x", seq=seq, staged_at=now)
            for staging_only in ("flush_id", "staged_seq", "staged_at"):
                del data[staging_only]
            errors = client.insert_rows_json(
                table_id, [data], retry=library_retry(timeout), timeout=timeout
            )
            if errors:
                raise RuntimeError(f"per-row insert failed: {errors}")
        seconds = time.monotonic() - began
        landed = _count(client, table_id, timeout)
    finally:
        client.close()
    return {
        "per_row_rows": len(rows),
        "per_row_seconds": round(seconds, 3),
        "per_row_rows_in_table": landed,
        "per_row_rows_per_second": round(len(rows) / seconds, 1),
    }


async def _run(settings: Settings) -> dict[str, Any]:
    rows = predictions()
    sink = await _through_sink(settings, rows)
    naive = await asyncio.to_thread(_per_row, settings, rows[:PER_ROW_SAMPLE])
    ratio = sink["sink_rows_per_second"] / naive["per_row_rows_per_second"]
    return {
        "benchmark": "sink",
        "batch_rows": settings.sink_batch_rows,
        "requests_per_second": settings.bigquery_requests_per_second,
        **sink,
        **naive,
        "ratio": round(ratio, 1),
        "ratio_target": TARGET_RATIO,
        "meets_targets": ratio >= TARGET_RATIO
        and sink["sink_rows_in_table"] == len(rows)
        and naive["per_row_rows_in_table"] == PER_ROW_SAMPLE,
    }


def _table(f: dict[str, Any]) -> str:
    lines = [
        (
            f"{f['sink_rows']} predictions into BigQuery (flush = {f['batch_rows']} rows, "
            f"throttle {f['requests_per_second']} requests/s)"
        ),
        f"{'method':<34}{'rows':>7}{'seconds':>10}{'rows/s':>11}{'in table':>10}",
        (
            f"{'PredictionSink (staging + MERGE)':<34}{f['sink_rows']:>7}{f['sink_seconds']:>10.3f}"
            f"{f['sink_rows_per_second']:>11.1f}{f['sink_rows_in_table']:>10}"
        ),
        (
            f"{'insert_rows_json, one per row':<34}{f['per_row_rows']:>7}"
            f"{f['per_row_seconds']:>10.3f}{f['per_row_rows_per_second']:>11.1f}"
            f"{f['per_row_rows_in_table']:>10}"
        ),
        f"ratio: {f['ratio']}x rows/s (target >= {TARGET_RATIO:g}x); flushes: {f['sink_flushes']}",
    ]
    return "\n".join(lines)


def _settings(**extra: Any) -> Settings:
    return Settings(
        **extra,
        bigquery_dataset=f"bench_sink_{uuid.uuid4().hex[:8]}",
        sink_batch_rows=BATCH_ROWS,
        bigquery_requests_per_second=REQUESTS_PER_SECOND,
    )


def main() -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the figures."""
    if os.environ.get("PHASEFLOW_BIGQUERY_ENDPOINT"):
        figures = asyncio.run(_run(_settings()))
    else:
        with BigQueryEmulator(PROJECT) as emulator:
            settings = _settings(bigquery_endpoint=emulator.endpoint, bigquery_project=PROJECT)
            figures = asyncio.run(_run(settings))
    print(_table(figures))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main()["meets_targets"] else 1)
