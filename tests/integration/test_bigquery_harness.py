"""The BigQuery emulator harness, exercised with the real google-cloud-bigquery client.

These pin down what the prediction sink (docs/bigquery-sink.md) relies on: a day-partitioned
table with a NUMERIC line, batched streaming inserts, `IN UNNEST(@players)`, and a staging-table
MERGE that keeps the latest `created_at` per key. The emulator runs on DuckDB: BigQuery-only
errors (e.g. PARTITION BY a FLOAT64 expression) do not show up here.

What the emulator does with timeouts and retries (bqemulator 1.4.0, google-cloud-bigquery 3.47):
- A query runs to completion inside the `jobs.insert` request; the job comes back DONE, so
  `job.result(timeout=...)` never waits and cannot bound a slow query. Only the HTTP `timeout=`
  passed to `client.query()` does.
- `QueryJobConfig(job_timeout_ms=...)` is accepted and ignored (a 2 s query with 10 ms finishes).
- A failed request is retried by `retry` (default deadline 600 s) AND, whenever `job_retry` is
  not None, the whole `jobs.insert` is wrapped again in the library's private insert retry with a
  fixed 600 s deadline, even if `job_retry` itself is bounded. So with the emulator down (or a
  request timing out) `client.query(sql, timeout=1)` with default retries blocks for ~10 min, and
  so does `retry=DEFAULT_RETRY.with_timeout(3), job_retry=DEFAULT_JOB_RETRY.with_timeout(3)`.
  Bounded: `retry=<a Retry with timeout T>, job_retry=None` (RetryError in <= T s; phaseflow
  passes its one policy, streams/core/bigquery_clients.py), or
  `query_and_wait(..., api_timeout=, wait_timeout=, retry=bounded, job_retry=None)`.
  Each retry of `jobs.insert` makes a new job id, so a timed-out statement may run twice: the
  MERGE must be idempotent (it is: matched rows update only to a newer `created_at`).
- A SQL error is 400 `invalidQuery`, not retried (fails in ~20 ms).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from google.api_core.exceptions import BadRequest, RetryError
from google.cloud import bigquery

from phaseflow.streams.core.bigquery_clients import RetryPolicy, make_bigquery_client
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
GAME_DATE = date(2026, 1, 15)
T0 = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)

PREDICTION_SCHEMA = [
    bigquery.SchemaField("prediction_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
    bigquery.SchemaField("game_id", "STRING"),
    bigquery.SchemaField("player_lookup", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("system_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("current_points_line", "NUMERIC"),
    bigquery.SchemaField("predicted_points", "FLOAT64"),
    bigquery.SchemaField("confidence_score", "FLOAT64"),
    bigquery.SchemaField("recommendation", "STRING"),
    bigquery.SchemaField("model_version", "STRING"),
    bigquery.SchemaField("batch_id", "STRING"),
    bigquery.SchemaField("created_at", "TIMESTAMP", mode="REQUIRED"),
]
COLUMNS = [field.name for field in PREDICTION_SCHEMA]
KEY = ["game_date", "player_lookup", "system_id", "current_points_line"]


def make_table(client: bigquery.Client, dataset: bigquery.Dataset, name: str) -> bigquery.Table:
    table = bigquery.Table(f"{dataset.project}.{dataset.dataset_id}.{name}", PREDICTION_SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field="game_date"
    )
    created: bigquery.Table = client.create_table(table, timeout=TIMEOUT)
    return created


def row(
    player: str, line: str, created_at: datetime, predicted: float = 20.0, system: str = "ma"
) -> dict[str, Any]:
    """One prediction as insert_rows_json wants it. NUMERIC goes as a string: a JSON float
    would already have lost exactness before BigQuery sees it."""
    return {
        "prediction_id": f"{player}-{system}-{line}-{created_at.isoformat()}",
        "game_date": GAME_DATE.isoformat(),
        "game_id": "G1",
        "player_lookup": player,
        "system_id": system,
        "current_points_line": line,
        "predicted_points": predicted,
        "confidence_score": 60.0,
        "recommendation": "OVER",
        "model_version": "v1",
        "batch_id": "b1",
        "created_at": created_at.isoformat(),
    }


def insert(client: bigquery.Client, table: bigquery.Table, rows: list[dict[str, Any]]) -> None:
    errors = client.insert_rows_json(table, rows, timeout=TIMEOUT)
    assert errors == []


def query(client: bigquery.Client, sql: str, params: list[Any] | None = None) -> list[bigquery.Row]:
    config = bigquery.QueryJobConfig(query_parameters=params or [])
    return list(client.query(sql, job_config=config, timeout=TIMEOUT).result(timeout=TIMEOUT))


def merge_sql(target: str, staging: str) -> str:
    """The sink's MERGE: dedup the staged batch by key (latest created_at), then upsert.

    Dedup by ROW_NUMBER over the key, never by PARTITION BY a FLOAT64 expression (BigQuery
    rejects that; DuckDB would not). `AND S.created_at > T.created_at` makes a re-run (retried
    job) and an older, late row no-ops.
    """
    on = " AND ".join(f"T.{col} = S.{col}" for col in KEY)
    updates = ", ".join(f"{col} = S.{col}" for col in COLUMNS if col not in KEY)
    cols = ", ".join(COLUMNS)
    values = ", ".join(f"S.{col}" for col in COLUMNS)
    partition = ", ".join(KEY)
    return f"""
        MERGE `{target}` T
        USING (
            SELECT * EXCEPT (rn) FROM (
                SELECT *, ROW_NUMBER() OVER (
                    PARTITION BY {partition} ORDER BY created_at DESC) AS rn
                FROM `{staging}`
            ) WHERE rn = 1
        ) S
        ON {on}
        WHEN MATCHED AND S.created_at > T.created_at THEN UPDATE SET {updates}
        WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})
    """  # noqa: S608 -- identifiers are the test's own table names


def table_id(table: bigquery.Table) -> str:
    return f"{table.project}.{table.dataset_id}.{table.table_id}"


@pytest.fixture
def predictions(bq_client: bigquery.Client, bq_dataset: bigquery.Dataset) -> bigquery.Table:
    return make_table(bq_client, bq_dataset, "player_prop_predictions")


def test_day_partitioned_numeric_table_takes_500_rows_in_one_request(
    bq_client: bigquery.Client, predictions: bigquery.Table
) -> None:
    rows = [row(f"player{i:03d}", "25.5", T0) for i in range(500)]

    insert(bq_client, predictions, rows)

    fetched = bq_client.get_table(table_id(predictions), timeout=TIMEOUT)
    assert fetched.time_partitioning.type_ == "DAY"
    assert fetched.time_partitioning.field == "game_date"
    line_type = {f.name: f.field_type for f in fetched.schema}["current_points_line"]
    assert line_type == "NUMERIC"
    [count] = query(bq_client, f"SELECT COUNT(*) AS n FROM `{table_id(predictions)}`")  # noqa: S608
    assert count["n"] == 500


def test_parameterized_query_with_in_unnest(
    bq_client: bigquery.Client, predictions: bigquery.Table
) -> None:
    insert(bq_client, predictions, [row(p, "20.5", T0) for p in ["a", "b", "c", "d"]])

    found = query(
        bq_client,
        f"SELECT player_lookup FROM `{table_id(predictions)}` "  # noqa: S608
        "WHERE player_lookup IN UNNEST(@players) AND game_date = @day ORDER BY player_lookup",
        [
            bigquery.ArrayQueryParameter("players", "STRING", ["b", "d", "zz"]),
            bigquery.ScalarQueryParameter("day", "DATE", GAME_DATE),
        ],
    )

    assert [r["player_lookup"] for r in found] == ["b", "d"]


def test_numeric_lines_stay_exact_and_distinct(
    bq_client: bigquery.Client, predictions: bigquery.Table
) -> None:
    insert(bq_client, predictions, [row("lebron", "25.5", T0), row("lebron", "26.0", T0)])

    lines = query(
        bq_client,
        f"SELECT current_points_line AS line FROM `{table_id(predictions)}` ORDER BY line",  # noqa: S608
    )
    exact = query(
        bq_client,
        f"SELECT COUNT(*) AS n FROM `{table_id(predictions)}` "  # noqa: S608
        "WHERE current_points_line = @line",
        [bigquery.ScalarQueryParameter("line", "NUMERIC", Decimal("25.5"))],
    )

    values = [r["line"] for r in lines]
    assert all(isinstance(v, Decimal) for v in values)
    assert values == [Decimal("25.5"), Decimal("26.0")]
    assert exact[0]["n"] == 1


def test_staging_merge_dedups_latest_created_at_wins(
    bq_client: bigquery.Client, bq_dataset: bigquery.Dataset, predictions: bigquery.Table
) -> None:
    staging = make_table(bq_client, bq_dataset, "player_prop_predictions_staging")
    insert(bq_client, predictions, [row("a", "25.5", T0, predicted=10.0)])
    later = T0 + timedelta(minutes=5)
    latest = T0 + timedelta(minutes=10)
    insert(
        bq_client,
        staging,
        [
            # key (a, 25.5) exists: two newer versions; the latest must win
            row("a", "25.5", later, predicted=11.0),
            row("a", "25.5", latest, predicted=12.0),
            # same player, other line: a different key, inserted
            row("a", "26.0", later, predicted=13.0),
            # new key staged twice, out of order
            row("b", "25.5", latest, predicted=14.0),
            row("b", "25.5", later, predicted=15.0),
        ],
    )
    sql = merge_sql(table_id(predictions), table_id(staging))

    job = bq_client.query(sql, timeout=TIMEOUT)
    job.result(timeout=TIMEOUT)
    rerun = bq_client.query(sql, timeout=TIMEOUT)
    rerun.result(timeout=TIMEOUT)

    assert job.num_dml_affected_rows == 3  # 1 updated + 2 inserted
    assert rerun.num_dml_affected_rows == 0  # a retried MERGE changes nothing
    rows = query(
        bq_client,
        f"SELECT player_lookup, current_points_line, predicted_points, created_at "  # noqa: S608
        f"FROM `{table_id(predictions)}` ORDER BY player_lookup, current_points_line",
    )
    assert [
        (r["player_lookup"], r["current_points_line"], r["predicted_points"], r["created_at"])
        for r in rows
    ] == [
        ("a", Decimal("25.5"), 12.0, latest),
        ("a", Decimal("26.0"), 13.0, later),
        ("b", Decimal("25.5"), 14.0, latest),
    ]


def test_query_http_timeout_is_bounded_only_without_job_retry(bq_client: bigquery.Client) -> None:
    """The emulator runs the query inside jobs.insert, so only the request timeout bounds it
    (see the module docstring for why job_retry must be None)."""
    slow = "SELECT COUNT(*) AS n FROM UNNEST(GENERATE_ARRAY(1, 3000000)) AS x"  # ~1 s here

    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        bq_client.query(slow, timeout=0.2, retry=None, job_retry=None)

    assert time.monotonic() - started < 5


@pytest.fixture
def own_emulator_client() -> Iterator[tuple[BigQueryEmulator, bigquery.Client]]:
    """A private persistent emulator: this test takes it down, the session's stays up."""
    with BigQueryEmulator("restart-test", persistent=True) as emulator:
        client = make_bigquery_client(
            Settings(bigquery_endpoint=emulator.endpoint, bigquery_project="restart-test")
        )
        yield emulator, client
        client.close()


def test_persistent_emulator_keeps_data_across_kill_and_restart(
    own_emulator_client: tuple[BigQueryEmulator, bigquery.Client],
) -> None:
    emulator, client = own_emulator_client
    dataset = client.create_dataset("ds", timeout=TIMEOUT)
    table = make_table(client, dataset, "t")
    insert(client, table, [row("a", "25.5", T0), row("b", "26.0", T0)])
    endpoint = emulator.endpoint

    emulator.kill()
    # While it is down a call under phaseflow's policy (2 s deadline here) fails fast instead of
    # retrying for the library's 10 minutes.
    bounded = RetryPolicy(deadline_seconds=2).sync()
    started = time.monotonic()
    with pytest.raises(RetryError):
        client.query("SELECT 1", timeout=1, retry=bounded, job_retry=None)
    assert time.monotonic() - started < 10
    emulator.start()

    assert emulator.endpoint == endpoint
    [count] = query(client, f"SELECT COUNT(*) AS n FROM `{table_id(table)}`")  # noqa: S608
    assert count["n"] == 2


def test_ephemeral_emulator_loses_data_on_restart() -> None:
    with BigQueryEmulator("ephemeral-test") as emulator:
        client = make_bigquery_client(
            Settings(bigquery_endpoint=emulator.endpoint, bigquery_project="ephemeral-test")
        )
        try:
            client.create_dataset("ds", timeout=TIMEOUT)
            emulator.restart()
            assert list(client.list_datasets(timeout=TIMEOUT)) == []
        finally:
            client.close()


def test_known_emulator_gap_load_table_from_json_fails(
    bq_client: bigquery.Client, predictions: bigquery.Table
) -> None:
    """Documents a known emulator gap, not desired behaviour: load jobs from JSON (multipart
    upload) are rejected by bqemulator 1.4.0, so the sink uses insert_rows_json. If this starts
    passing, the emulator gained the feature."""
    with pytest.raises(BadRequest, match="unsupported Content-Type"):
        bq_client.load_table_from_json(
            [row("a", "25.5", T0)], table_id(predictions), timeout=TIMEOUT
        ).result(timeout=TIMEOUT)


def test_known_emulator_gap_merge_insert_row_fails(
    bq_client: bigquery.Client, bq_dataset: bigquery.Dataset, predictions: bigquery.Table
) -> None:
    """Documents a known emulator gap, not desired behaviour: `WHEN NOT MATCHED THEN INSERT ROW`
    is valid BigQuery but a parser error on the emulator; the sink lists columns explicitly."""
    staging = make_table(bq_client, bq_dataset, "staging")
    sql = (
        f"MERGE `{table_id(predictions)}` T USING `{table_id(staging)}` S "
        "ON T.prediction_id = S.prediction_id WHEN NOT MATCHED THEN INSERT ROW"
    )

    with pytest.raises(BadRequest, match='syntax error at or near "ROW"'):
        bq_client.query(sql, timeout=TIMEOUT).result(timeout=TIMEOUT)
