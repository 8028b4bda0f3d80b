"""Benchmark: predictions into BigQuery through PredictionSink vs one insert_rows_json per row.

Runs with no arguments: starts an ephemeral BigQuery emulator (unless
``PHASEFLOW_BIGQUERY_ENDPOINT`` is set), then (a) pushes 11,250 predictions (450 players x
5 systems x 5 lines) through :class:`phaseflow.sinks.bigquery_predictions.PredictionSink` (staging
inserts of 500 rows + one MERGE per flush) and counts what landed, (b) writes the same rows the way
the sink does but without it (staging inserts of 500 rows one after the other, then ONE MERGE of
all of them: the floor the sink's own overhead is measured against), and (c) inserts a 300-row
sample one ``insert_rows_json`` request per row, as a naive writer would, in three slices around
(a) and (b). (a) runs for each staging path, each into tables of its own on the same emulator:
insertAll (``PHASEFLOW_SINK_STAGING=insert_all``; the figure the per-row ratio is taken from), the
Storage Write API with protobuf rows (``storage_write``) and with Arrow rows
(``storage_write_arrow``, the default): one untimed warm-up each, then ROUNDS runs interleaved,
the median reported; the MERGEs and each Storage Write call (create, append, finalize, commit)
are timed apart. Where the Storage Write staging spends its time is also measured in this
process: our side (row dicts + protobuf; columns + Arrow) and the emulator's own decoding code
for the same requests, called directly. Reports rows/s side by side. No broker is needed. Prints
a table; the last line is one
JSON object with the figures.
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
from typing import Any, Final, Literal

from google.cloud import bigquery

from phaseflow.models.events import Prediction
from phaseflow.sinks.bigquery_predictions import (
    MAX_ROWS_PER_INSERT,
    PredictionSink,
    prediction_columns,
    prediction_row,
)
from phaseflow.sinks.merge_sql import PREDICTION_SCHEMA, STAGING_SCHEMA, merge_sql
from phaseflow.sinks.storage_write_arrow import ArrowRows
from phaseflow.sinks.storage_write_rows import ROWS_PER_REQUEST, RowEncoder
from phaseflow.sinks.storage_write_staging import StorageWriteStaging
from phaseflow.streams.core.bigquery_clients import (
    RetryPolicy,
    ensure_dataset,
    make_bigquery_client,
)
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator

PROJECT: Final = "bench-sink"
DAY: Final = date(2026, 1, 15)
PLAYERS: Final = 450
SYSTEMS: Final = ("moving_average", "xgb", "ridge", "ensemble", "similarity")
LINES: Final = ("18.5", "20.0", "21.5", "23.0", "24.5")
PER_ROW_SAMPLE: Final = 300
#: Each staging path runs this many times, interleaved (insertAll, protobuf, Arrow, insertAll...),
#: after one untimed warm-up of WARM_UP_ROWS each; the run with the median time is reported.
ROUNDS: Final = 5
WARM_UP_ROWS: Final = 500
BATCH_ROWS: Final = 2500  # 5 staging requests of 500 rows + 1 MERGE per flush
REQUESTS_PER_SECOND: Final = 100
TARGET_RATIO: Final = 100.0
#: The sink staging through the Storage Write API vs through insertAll (issue 14).
STORAGE_WRITE_TARGET: Final = 3.0
Staging = Literal["insert_all", "storage_write", "storage_write_arrow"]
#: The figures' key prefix of each staging path.
PREFIX: Final[dict[Staging, str]] = {
    "insert_all": "sink",
    "storage_write": "storage_write",
    "storage_write_arrow": "storage_write_arrow",
}
_STORAGE_WRITE_CALLS: Final = ("_create", "_append", "_finalize", "_commit")


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
        retry=RetryPolicy(deadline_seconds=timeout).sync(),
        job_retry=None,
    )
    return int(next(iter(job.result(timeout=timeout)))["n"])


def _batched_without_sink(settings: Settings, rows: list[Prediction]) -> dict[str, Any]:
    """Staging inserts of MAX_ROWS_PER_INSERT rows, then one MERGE of them all: no buffering,
    no retries, no throttle, tables of their own (same schemas and SQL as the sink's)."""
    reference = PredictionSink(
        settings, dead_letter=_dead_letter, table="reference", staging_table="reference_staging"
    )
    client = make_bigquery_client(settings)
    timeout = settings.bigquery_timeout_seconds
    try:
        asyncio.run(reference.setup())
        flush_id = uuid.uuid4().hex
        began = time.monotonic()
        staged_at = datetime.now(UTC)
        for start in range(0, len(rows), MAX_ROWS_PER_INSERT):
            seqs = range(start + 1, min(start + MAX_ROWS_PER_INSERT, len(rows)) + 1)
            errors = client.insert_rows_json(
                reference.staging_id,
                [
                    prediction_row(rows[seq - 1], flush_id=flush_id, seq=seq, staged_at=staged_at)
                    for seq in seqs
                ],
                row_ids=[f"{flush_id}:{seq}" for seq in seqs],
                retry=RetryPolicy(deadline_seconds=timeout).sync(),
                timeout=timeout,
            )
            if errors:
                raise RuntimeError(f"batched insert failed: {errors}")
        client.query_and_wait(
            merge_sql(reference.table_id, reference.staging_id),
            job_config=bigquery.QueryJobConfig(
                query_parameters=[
                    bigquery.ScalarQueryParameter("flush_id", "STRING", flush_id),
                    bigquery.ScalarQueryParameter("first_seq", "INT64", 1),
                    bigquery.ScalarQueryParameter("last_seq", "INT64", len(rows)),
                ]
            ),
            api_timeout=timeout,
            wait_timeout=timeout,
            retry=RetryPolicy(deadline_seconds=timeout).sync(),
            job_retry=None,  # type: ignore[arg-type] # the library accepts None
        )
        seconds = time.monotonic() - began
        landed = _count(client, reference.table_id, timeout)
    finally:
        client.close()
        asyncio.run(reference.close())
    return {
        "batched_rows": len(rows),
        "batched_seconds": round(seconds, 3),
        "batched_rows_in_table": landed,
        "batched_rows_per_second": round(len(rows) / seconds, 1),
    }


async def _through_sink(
    settings: Settings, rows: list[Prediction], staging: Staging = "insert_all", run: str = "0"
) -> dict[str, Any]:
    """The sink on ``staging``, tables of its own (per ``run``); also how long staging, its
    Storage Write calls and the MERGEs took."""
    name = f"predictions_{staging}_{run}"
    sink = PredictionSink(
        settings,
        dead_letter=_dead_letter,
        max_buffer_rows=max(len(rows), settings.sink_batch_rows),
        staging=staging,
        table=name,
        staging_table=f"{name}_staging",
        latest_view=f"{name}_latest",
    )
    merge_seconds = _time_merges(sink)
    await sink.start()
    call_seconds = _time_storage_write_calls(sink.storage_write)  # the setup's probe left out
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
    prefix = PREFIX[staging]
    calls = {f"{prefix}{name}_seconds": round(seconds, 3) for name, seconds in call_seconds.items()}
    return {
        **calls,
        f"{prefix}_rows": len(rows),
        f"{prefix}_seconds": round(seconds, 3),
        f"{prefix}_merge_seconds": round(sum(merge_seconds), 3),
        f"{prefix}_flushes": sink.metrics.flushes,
        f"{prefix}_rows_in_table": landed,
        f"{prefix}_rows_per_second": round(len(rows) / seconds, 1),
    }


def _median_run(prefix: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time, with every run's rows/s and the fewest rows any run landed."""
    chosen = sorted(runs, key=lambda run: float(run[f"{prefix}_seconds"]))[len(runs) // 2]
    return {
        **chosen,
        f"{prefix}_rows_per_second_runs": [run[f"{prefix}_rows_per_second"] for run in runs],
        f"{prefix}_rows_in_table": min(int(run[f"{prefix}_rows_in_table"]) for run in runs),
    }


def _time_merges(sink: PredictionSink) -> list[float]:
    """Record how long each of ``sink``'s MERGEs takes (the rest of a flush is staging)."""
    took: list[float] = []
    merge = sink._merge

    async def timed(flush_id: str, first_seq: int, last_seq: int) -> int | None:
        began = time.monotonic()
        try:
            return await merge(flush_id, first_seq, last_seq)
        finally:
            took.append(time.monotonic() - began)

    sink._merge = timed  # type: ignore[method-assign]
    return took


def _time_storage_write_calls(staging: StorageWriteStaging | None) -> dict[str, float]:
    """Seconds spent in each kind of Storage Write call of ``staging`` from now on, e.g.
    ``{"_append": 0.4, ...}``; empty for insertAll."""
    took: dict[str, float] = {}
    if staging is None:
        return took
    for name in _STORAGE_WRITE_CALLS:
        original = getattr(staging, name)

        def timed(*args: Any, _name: str = name, _call: Any = original, **kwargs: Any) -> Any:
            async def run() -> Any:
                began = time.monotonic()
                try:
                    return await _call(*args, **kwargs)
                finally:
                    took[_name] = took.get(_name, 0.0) + time.monotonic() - began

            return run()

        setattr(staging, name, timed)
    return took


def _per_row_table(settings: Settings) -> str:
    table_id = (
        f"{settings.bigquery_project}.{settings.bigquery_dataset}.per_row_{uuid.uuid4().hex[:8]}"
    )
    client = make_bigquery_client(settings)
    timeout = settings.bigquery_timeout_seconds
    try:
        ensure_dataset(
            client,
            settings.bigquery_dataset,
            timeout=timeout,
            retry=RetryPolicy(deadline_seconds=timeout).sync(),
        )
        client.create_table(
            bigquery.Table(table_id, list(PREDICTION_SCHEMA)),
            timeout=timeout,
            retry=RetryPolicy(deadline_seconds=timeout).sync(),
        )
    finally:
        client.close()
    return table_id


def _one_by_one(settings: Settings, table_id: str, rows: list[Prediction]) -> float:
    """Insert ``rows`` one ``insert_rows_json`` request each; return the seconds it took."""
    client = make_bigquery_client(settings)
    timeout = settings.bigquery_timeout_seconds
    try:
        now = datetime.now(UTC)
        began = time.monotonic()
        for seq, row in enumerate(rows):
            data = prediction_row(row, flush_id="x", seq=seq, staged_at=now)
            for staging_only in ("flush_id", "staged_seq", "staged_at"):
                del data[staging_only]
            errors = client.insert_rows_json(
                table_id,
                [data],
                retry=RetryPolicy(deadline_seconds=timeout).sync(),
                timeout=timeout,
            )
            if errors:
                raise RuntimeError(f"per-row insert failed: {errors}")
        return time.monotonic() - began
    finally:
        client.close()


def _storage_write_breakdown(rows: list[Prediction]) -> dict[str, Any]:
    """Where Storage Write staging spends its time, in this process: building the row dicts and
    encoding them as protobuf messages; building the sink's columns and encoding them as Arrow
    record batches (the same requests the sink sends);
    and the emulator's own code turning those requests into the Arrow table it appends
    (bqemulator's servicer functions, called directly: for protobuf its per-row Python loop)."""
    from bqemulator.api.routes.tabledata import _build_arrow_schema
    from bqemulator.grpc_api.write_servicer import _align_to_target
    from bqemulator.streaming.arrow_deserializer import deserialize_arrow_rows
    from bqemulator.streaming.proto_deserializer import ProtoRowDecoder, proto_rows_to_arrow_table

    staged_at = datetime.now(UTC)
    began = time.monotonic()
    dicts = [
        prediction_row(row, flush_id="f", seq=seq, staged_at=staged_at)
        for seq, row in enumerate(rows, start=1)
    ]
    built = time.monotonic()
    encoder = RowEncoder(STAGING_SCHEMA)
    encoded = [encoder.encode(row) for row in dicts]
    encoded_at = time.monotonic()
    columns_began = time.monotonic()
    arrow = ArrowRows(STAGING_SCHEMA)
    columns = prediction_columns(
        rows, flush_id="f", seqs=range(1, len(rows) + 1), staged_at=staged_at
    )
    arrow_requests = arrow.requests(arrow.encode_columns(columns, len(rows))[0])
    arrow_at = time.monotonic()
    decoder = ProtoRowDecoder(encoder.descriptor)
    schema = _build_arrow_schema(
        [{"name": f.name, "type": f.field_type, "mode": f.mode} for f in STAGING_SCHEMA]
    )
    decode_began = time.monotonic()
    for start in range(0, len(encoded), ROWS_PER_REQUEST):
        proto_rows_to_arrow_table(decoder, encoded[start : start + ROWS_PER_REQUEST], schema)
    proto_decoded = time.monotonic()
    for _, request in arrow_requests:
        batch = bytes(request.arrow_rows.rows.serialized_record_batch)
        _align_to_target(deserialize_arrow_rows(arrow.serialized_schema, batch), schema)
    return {
        "row_dicts_seconds": round(built - began, 3),
        "proto_encode_seconds": round(encoded_at - built, 3),
        "arrow_encode_seconds": round(arrow_at - columns_began, 3),
        "emulator_proto_decode_seconds": round(proto_decoded - decode_began, 3),
        "emulator_arrow_decode_seconds": round(time.monotonic() - proto_decoded, 3),
    }


async def _run(settings: Settings) -> dict[str, Any]:
    rows = predictions()
    # The load on this shared machine swings: the per-row sample runs in three slices, before,
    # between and after the batched runs, so all see the same conditions.
    table_id = await asyncio.to_thread(_per_row_table, settings)
    third = PER_ROW_SAMPLE // 3
    slices = [rows[i : i + third] for i in range(0, PER_ROW_SAMPLE, third)]
    per_row_seconds = await asyncio.to_thread(_one_by_one, settings, table_id, slices[0])
    # One-off costs of a fresh emulator and client (first statements, first stream) are paid
    # once by a long-running worker, not per flush: an untimed warm-up of each path first.
    for staging in PREFIX:
        await _through_sink(settings, rows[:WARM_UP_ROWS], staging, "warm_up")
    runs: dict[str, list[dict[str, Any]]] = {staging: [] for staging in PREFIX}
    for number in range(ROUNDS):
        for staging in PREFIX:
            runs[staging].append(await _through_sink(settings, rows, staging, str(number)))
    sink, storage_write, storage_write_arrow = (
        _median_run(PREFIX[staging], runs[staging]) for staging in PREFIX
    )
    per_row_seconds += await asyncio.to_thread(_one_by_one, settings, table_id, slices[1])
    batched = await asyncio.to_thread(_batched_without_sink, settings, rows)
    per_row_seconds += await asyncio.to_thread(_one_by_one, settings, table_id, slices[2])
    breakdown = _storage_write_breakdown(rows)
    count_client = make_bigquery_client(settings)
    try:
        landed = await asyncio.to_thread(
            _count, count_client, table_id, settings.bigquery_timeout_seconds
        )
    finally:
        count_client.close()
    naive = {
        "per_row_rows": PER_ROW_SAMPLE,
        "per_row_seconds": round(per_row_seconds, 3),
        "per_row_rows_in_table": landed,
        "per_row_rows_per_second": round(PER_ROW_SAMPLE / per_row_seconds, 1),
    }
    ratio = sink["sink_rows_per_second"] / naive["per_row_rows_per_second"]
    paths = {**sink, **storage_write, **storage_write_arrow}
    ratios: dict[str, Any] = {}
    insert_all_staging = sink["sink_seconds"] - sink["sink_merge_seconds"]
    for prefix in ("storage_write", "storage_write_arrow"):
        ratios[f"{prefix}_ratio"] = round(
            paths[f"{prefix}_rows_per_second"] / sink["sink_rows_per_second"], 2
        )
        ratios[f"{prefix}_staging_only_ratio"] = round(
            insert_all_staging / (paths[f"{prefix}_seconds"] - paths[f"{prefix}_merge_seconds"]),
            2,
        )
    ratios["storage_write_arrow_round_ratios"] = [
        round(arrow / insert_all, 2)
        for arrow, insert_all in zip(
            paths["storage_write_arrow_rows_per_second_runs"],
            paths["sink_rows_per_second_runs"],
            strict=True,
        )
    ]
    # The target is met by the faster Storage Write path (Arrow rows, on the emulator).
    staging_ratio = max(ratios["storage_write_ratio"], ratios["storage_write_arrow_ratio"])
    floor_ratio = batched["batched_rows_per_second"] / naive["per_row_rows_per_second"]
    return {
        "benchmark": "sink",
        "batch_rows": settings.sink_batch_rows,
        "requests_per_second": settings.bigquery_requests_per_second,
        **paths,
        **breakdown,
        **batched,
        **naive,
        "ratio": round(ratio, 1),
        "batched_ratio": round(floor_ratio, 1),
        "sink_share_of_batched": round(
            sink["sink_rows_per_second"] / batched["batched_rows_per_second"], 2
        ),
        "ratio_target": TARGET_RATIO,
        **ratios,
        "storage_write_ratio_target": STORAGE_WRITE_TARGET,
        "meets_targets": ratio >= TARGET_RATIO
        and staging_ratio >= STORAGE_WRITE_TARGET
        and sink["sink_rows_in_table"] == len(rows)
        and storage_write["storage_write_rows_in_table"] == len(rows)
        and storage_write_arrow["storage_write_arrow_rows_in_table"] == len(rows)
        and batched["batched_rows_in_table"] == len(rows)
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
            f"{'PredictionSink, insertAll':<34}{f['sink_rows']:>7}{f['sink_seconds']:>10.3f}"
            f"{f['sink_rows_per_second']:>11.1f}{f['sink_rows_in_table']:>10}"
        ),
        *(
            (
                f"{label:<34}{f[prefix + '_rows']:>7}{f[prefix + '_seconds']:>10.3f}"
                f"{f[prefix + '_rows_per_second']:>11.1f}{f[prefix + '_rows_in_table']:>10}"
            )
            for label, prefix in (
                ("PredictionSink, SW protobuf", "storage_write"),
                ("PredictionSink, SW Arrow", "storage_write_arrow"),
            )
        ),
        (
            f"{'batched inserts + 1 MERGE, no sink':<34}{f['batched_rows']:>7}"
            f"{f['batched_seconds']:>10.3f}{f['batched_rows_per_second']:>11.1f}"
            f"{f['batched_rows_in_table']:>10}"
        ),
        (
            f"{'insert_rows_json, one per row':<34}{f['per_row_rows']:>7}"
            f"{f['per_row_seconds']:>10.3f}{f['per_row_rows_per_second']:>11.1f}"
            f"{f['per_row_rows_in_table']:>10}"
        ),
        (
            f"{ROUNDS} runs each, interleaved, median shown (rows/s): insertAll "
            f"{f['sink_rows_per_second_runs']}, protobuf {f['storage_write_rows_per_second_runs']}"
            f", Arrow {f['storage_write_arrow_rows_per_second_runs']}; Arrow / insertAll per "
            f"round {f['storage_write_arrow_round_ratios']}"
        ),
        f"ratio: {f['ratio']}x rows/s (target >= {TARGET_RATIO:g}x); flushes: {f['sink_flushes']}",
        *(
            (
                f"Storage Write {kind} / insertAll: {f[prefix + '_ratio']}x rows/s (target >= "
                f"{STORAGE_WRITE_TARGET:g}x); staging alone (MERGEs taken out): "
                f"{f[prefix + '_staging_only_ratio']}x; MERGE {f[prefix + '_merge_seconds']:.3f} s "
                f"(insertAll {f['sink_merge_seconds']:.3f} s); calls: create "
                f"{f.get(prefix + '_create_seconds', 0):.3f} s, append "
                f"{f.get(prefix + '_append_seconds', 0):.3f} s, finalize "
                f"{f.get(prefix + '_finalize_seconds', 0):.3f} s, commit "
                f"{f.get(prefix + '_commit_seconds', 0):.3f} s"
            )
            for kind, prefix in (("protobuf", "storage_write"), ("Arrow", "storage_write_arrow"))
        ),
        (
            f"Storage Write staging, in this process: ours: row dicts {f['row_dicts_seconds']:.3f}"
            f" s + protobuf {f['proto_encode_seconds']:.3f} s, columns + Arrow "
            f"{f['arrow_encode_seconds']:.3f} s; the emulator's decoding of the same rows: "
            f"protobuf {f['emulator_proto_decode_seconds']:.3f} s, Arrow "
            f"{f['emulator_arrow_decode_seconds']:.3f} s"
        ),
        (
            f"without the sink: {f['batched_ratio']}x; the sink runs at "
            f"{f['sink_share_of_batched']:.0%} of that"
        ),
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
            settings = _settings(
                bigquery_endpoint=emulator.endpoint,
                bigquery_write_endpoint=emulator.write_endpoint,
                bigquery_project=PROJECT,
            )
            figures = asyncio.run(_run(settings))
    print(_table(figures))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main()["meets_targets"] else 1)
