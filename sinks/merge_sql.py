"""Schemas and SQL of the prediction sink (docs/bigquery-sink.md), kept apart so they can be tested
without BigQuery.

The key of ``player_prop_predictions`` is ``(game_date, player_lookup, system_id, line_key)``.
``line_key`` is a STRING column holding the line exactly as it appears in the topic key (the text
after the last ':' of ``Prediction.key``: ``"25.5"``, ``"26.0"``, or ``"NO_LINE"``). It is used
instead of ``current_points_line`` in the key because that NUMERIC is NULL for NO_LINE predictions
and ``NULL = NULL`` is not true in SQL, so a NO_LINE prediction would never match its previous
version and would be inserted again on every update. ``current_points_line`` (NUMERIC, exact) is
still stored for queries; the two always agree because both come from the same Decimal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from google.cloud import bigquery

TARGET_TABLE: Final = "player_prop_predictions"
STAGING_TABLE: Final = "player_prop_predictions_staging"
#: The view over the target that keeps, per game_date, only the rows of its latest batch.
LATEST_VIEW: Final = "player_prop_predictions_latest"

PREDICTION_SCHEMA: Final[tuple[bigquery.SchemaField, ...]] = (
    bigquery.SchemaField("prediction_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
    bigquery.SchemaField("game_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("player_lookup", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("system_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("line_key", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("current_points_line", "NUMERIC"),
    bigquery.SchemaField("predicted_points", "FLOAT64", mode="REQUIRED"),
    bigquery.SchemaField("confidence_score", "FLOAT64", mode="REQUIRED"),
    bigquery.SchemaField("recommendation", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("model_version", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("batch_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("created_at", "TIMESTAMP", mode="REQUIRED"),
)
#: Staging adds which flush a row belongs to, its order in that flush and when it was staged.
STAGING_SCHEMA: Final[tuple[bigquery.SchemaField, ...]] = (
    *PREDICTION_SCHEMA,
    bigquery.SchemaField("flush_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("staged_seq", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("staged_at", "TIMESTAMP", mode="REQUIRED"),
)
KEY_COLUMNS: Final = ("game_date", "player_lookup", "system_id", "line_key")
COLUMNS: Final = tuple(field.name for field in PREDICTION_SCHEMA)

_IDENT: Final = re.compile(r"[A-Za-z0-9_.-]+")


def _quote(table_id: str) -> str:
    if not _IDENT.fullmatch(table_id):
        raise ValueError(f"not a plain table id: {table_id!r}")
    return f"`{table_id}`"


def merge_sql(target: str, staging: str) -> str:
    """One MERGE of one flush (``@flush_id``) from staging into the target.

    Only the flush's rows with ``@first_seq <= staged_seq <= @last_seq`` take part: the whole
    flush normally, a part of it when the sink isolates rows BigQuery refuses to merge.
    The source keeps the latest ``created_at`` per key (ties: the row staged first, which is
    also what wins between flushes, since only a strictly newer row replaces a stored one).
    Re-running it is a no-op, so a retried or duplicated job cannot double or regress a row.
    """
    partition = ", ".join(KEY_COLUMNS)
    cols = ", ".join(COLUMNS)
    on = " AND ".join(f"T.{col} = S.{col}" for col in KEY_COLUMNS)
    updates = ", ".join(f"{col} = S.{col}" for col in COLUMNS if col not in KEY_COLUMNS)
    values = ", ".join(f"S.{col}" for col in COLUMNS)
    # Identifiers are checked by _quote; every value is a query parameter.
    return (
        f"MERGE {_quote(target)} T\n"  # noqa: S608
        f"USING (\n"
        f"  SELECT {cols} FROM (\n"
        f"    SELECT {cols}, ROW_NUMBER() OVER (\n"
        f"      PARTITION BY {partition} ORDER BY created_at DESC, staged_seq ASC) AS rn\n"
        f"    FROM {_quote(staging)}\n"
        f"    WHERE flush_id = @flush_id\n"
        f"      AND staged_seq BETWEEN @first_seq AND @last_seq\n"
        f"  ) WHERE rn = 1\n"
        f") S\n"
        f"ON {on}\n"
        f"WHEN MATCHED AND S.created_at > T.created_at THEN UPDATE SET {updates}\n"
        f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
    )


def latest_view_sql(target: str) -> str:
    """The query of :data:`LATEST_VIEW`: per ``game_date``, the rows of the batch that started
    last, i.e. whose earliest stored ``created_at`` is the latest (ties: the greater batch_id).

    A rerun's batch replaces the rows it predicts again (same key, newer ``created_at``) in the
    target; rows of an earlier batch for a line or player it no longer predicts stay in the table
    (history, and nothing is deleted by a MERGE of a part of a batch) but not in this view. The
    view needs no write of its own, so it cannot make a retried flush duplicate anything.
    """
    source = _quote(target)
    return (
        f"WITH batches AS (\n"  # noqa: S608 -- the table id is checked by _quote
        f"  SELECT game_date, batch_id, MIN(created_at) AS first_created_at\n"
        f"  FROM {source} GROUP BY game_date, batch_id\n"
        f"), latest AS (\n"
        f"  SELECT game_date, batch_id FROM (\n"
        f"    SELECT game_date, batch_id, ROW_NUMBER() OVER (\n"
        f"      PARTITION BY game_date ORDER BY first_created_at DESC, batch_id DESC) AS rn\n"
        f"    FROM batches\n"
        f"  ) WHERE rn = 1\n"
        f")\n"
        f"SELECT T.* FROM {source} T\n"
        f"JOIN latest L ON T.game_date = L.game_date AND T.batch_id = L.batch_id"
    )


def cleanup_sql(staging: str) -> str:
    """Delete staged rows older than ``@cutoff`` (already merged: a flush merges within seconds,
    and a flush still being retried is excluded by ``@pending``)."""
    return (
        f"DELETE FROM {_quote(staging)} "  # noqa: S608 -- the table id is checked by _quote
        "WHERE staged_at < @cutoff AND flush_id NOT IN UNNEST(@pending)"
    )


_PARTITION_BY: Final = re.compile(r"\bPARTITION\s+BY\b", re.IGNORECASE)
_CLAUSE_END: Final = re.compile(r"\s*\b(ORDER\s+BY|ROWS|RANGE)\b", re.IGNORECASE)


def _partition_list(sql: str, start: int) -> list[str]:
    """The comma-separated expressions from ``start`` to the end of the PARTITION BY clause
    (a closing parenthesis of the window or ORDER BY/ROWS/RANGE), parentheses respected."""
    parts: list[str] = []
    depth = 0
    current = ""
    i = start
    while i < len(sql):
        char = sql[i]
        if depth == 0 and (char == ")" or _CLAUSE_END.match(sql, i)):
            break
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def partition_by_expressions(sql: str) -> list[str]:
    """Every expression listed in a ``PARTITION BY`` clause of ``sql`` (window functions)."""
    found: list[str] = []
    for match in _PARTITION_BY.finditer(sql):
        found.extend(_partition_list(sql, match.end()))
    return found


def float_partitions(sql: str, schema: Iterable[bigquery.SchemaField]) -> list[str]:
    """The ``PARTITION BY`` expressions of ``sql`` BigQuery would reject or that cannot be
    checked: FLOAT64 columns, and anything that is not a plain column of ``schema`` (an
    expression's type is not known here, so it is reported rather than trusted)."""
    types = {field.name: field.field_type.upper() for field in schema}
    bad: list[str] = []
    for expression in partition_by_expressions(sql):
        column = expression.split(".")[-1].strip("`")
        if types.get(column) in {None, "FLOAT", "FLOAT64"}:
            bad.append(expression)
    return bad


def check_partitions(sql: str, schema: Sequence[bigquery.SchemaField]) -> None:
    """Raise ValueError if :func:`float_partitions` finds anything."""
    bad = float_partitions(sql, schema)
    if bad:
        raise ValueError(f"PARTITION BY over FLOAT64 or unknown expressions: {bad}")
