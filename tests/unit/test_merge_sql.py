"""The sink's generated SQL, checked against the schema it runs on (no BigQuery needed).

BigQuery rejects ``PARTITION BY`` over a FLOAT64 expression; the emulator (DuckDB) does not, so
this is the test that would catch it.
"""

from __future__ import annotations

import pytest
from google.cloud import bigquery

from phaseflow.sinks.merge_sql import (
    COLUMNS,
    KEY_COLUMNS,
    PREDICTION_SCHEMA,
    STAGING_SCHEMA,
    check_partitions,
    float_partitions,
    latest_view_sql,
    merge_sql,
    partition_by_expressions,
)

SQL = merge_sql("p.d.player_prop_predictions", "p.d.player_prop_predictions_staging")
TYPES = {field.name: field.field_type for field in STAGING_SCHEMA}


def test_merge_partitions_only_by_the_key_and_no_float64_column() -> None:
    expressions = partition_by_expressions(SQL)

    assert expressions == list(KEY_COLUMNS)
    assert [TYPES[e] for e in expressions] == ["DATE", "STRING", "STRING", "STRING"]
    assert float_partitions(SQL, STAGING_SCHEMA) == []
    check_partitions(SQL, STAGING_SCHEMA)


def test_the_schema_really_has_float64_columns_the_check_would_catch() -> None:
    floats = [f.name for f in PREDICTION_SCHEMA if f.field_type in {"FLOAT", "FLOAT64"}]
    assert floats == ["predicted_points", "confidence_score"]
    assert TYPES["current_points_line"] == "NUMERIC"
    bad = SQL.replace("PARTITION BY game_date,", "PARTITION BY game_date, predicted_points,")

    assert float_partitions(bad, STAGING_SCHEMA) == ["predicted_points"]
    with pytest.raises(ValueError, match="predicted_points"):
        check_partitions(bad, STAGING_SCHEMA)


def test_expressions_and_unknown_columns_are_reported_not_trusted() -> None:
    sql = "SELECT ROW_NUMBER() OVER (PARTITION BY CAST(x AS FLOAT64), game_date) FROM t"
    schema = [bigquery.SchemaField("game_date", "DATE")]

    assert float_partitions(sql, schema) == ["CAST(x AS FLOAT64)"]


def test_merge_shape() -> None:
    assert "WHERE flush_id = @flush_id" in SQL
    assert "WHEN MATCHED AND S.created_at > T.created_at THEN UPDATE SET" in SQL
    assert f"WHEN NOT MATCHED THEN INSERT ({', '.join(COLUMNS)})" in SQL
    assert "INSERT ROW" not in SQL  # a parser error on the emulator
    assert "line_key" in KEY_COLUMNS
    assert "current_points_line" not in KEY_COLUMNS  # NULL for NO_LINE: would never match


def test_table_ids_are_checked() -> None:
    with pytest.raises(ValueError, match="plain table id"):
        merge_sql("p.d.t` WHERE 1=1 --", "p.d.s")


def test_latest_view_partitions_by_the_date_only_and_keeps_whole_batches() -> None:
    view = latest_view_sql("p.d.player_prop_predictions")
    assert partition_by_expressions(view) == ["game_date"]
    check_partitions(view, PREDICTION_SCHEMA)
    assert "JOIN latest L ON T.game_date = L.game_date AND T.batch_id = L.batch_id" in view
    with pytest.raises(ValueError, match="plain table id"):
        latest_view_sql("p.d.t` --")
