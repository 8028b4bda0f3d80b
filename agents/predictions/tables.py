"""The BigQuery source tables the prediction path reads (written by phase 3, or `phaseflow seed`).

One place for their names and schemas, so the seeder, the coordinator's source query and the
workers' history query cannot drift apart.
"""

from __future__ import annotations

from typing import Final

from google.cloud import bigquery

UPCOMING_CONTEXT: Final = "upcoming_player_game_context"
PROP_LINES: Final = "prop_lines"
GAME_SUMMARY: Final = "player_game_summary"

SCHEMAS: Final[dict[str, list[bigquery.SchemaField]]] = {
    UPCOMING_CONTEXT: [
        bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("game_id", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("player_lookup", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("player_name", "STRING"),
        bigquery.SchemaField("team", "STRING"),
        bigquery.SchemaField("opponent", "STRING"),
        bigquery.SchemaField("is_home", "BOOL"),
        bigquery.SchemaField("days_rest", "INT64"),
    ],
    PROP_LINES: [
        bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("game_id", "STRING"),
        bigquery.SchemaField("player_lookup", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("bookmaker", "STRING"),
        # NUMERIC: lines are exact decimals (25.5), never binary floats.
        bigquery.SchemaField("points_line", "NUMERIC", mode="REQUIRED"),
        bigquery.SchemaField("over_price", "INT64"),
        bigquery.SchemaField("under_price", "INT64"),
        bigquery.SchemaField("captured_at", "TIMESTAMP"),
    ],
    GAME_SUMMARY: [
        bigquery.SchemaField("player_lookup", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("game_id", "STRING"),
        bigquery.SchemaField("team", "STRING"),
        bigquery.SchemaField("opponent", "STRING"),
        bigquery.SchemaField("is_home", "BOOL"),
        bigquery.SchemaField("minutes", "FLOAT64"),
        bigquery.SchemaField("points", "INT64"),
        bigquery.SchemaField("fg_attempts", "INT64"),
        bigquery.SchemaField("three_pt_attempts", "INT64"),
        bigquery.SchemaField("ft_attempts", "INT64"),
    ],
}


def table_ref(project: str, dataset: str, table: str) -> str:
    """`project.dataset.table`, as it goes between backticks in SQL."""
    return f"{project}.{dataset}.{table}"
