"""A rerun's batch replaces the date's predictions: stale rows of the earlier batch (lines or
players no longer offered) stay in ``player_prop_predictions`` but not in the
``player_prop_predictions_latest`` view. On the real emulator, through the real sink."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from google.cloud import bigquery

from phaseflow.models.events import Prediction
from phaseflow.sinks.bigquery_predictions import PredictionSink
from phaseflow.streams.core.settings import Settings
from tests.fixtures.bigquery import STAGINGS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("sink_staging", STAGINGS, indirect=True),
]

DAY = date(2026, 1, 15)
OTHER_DAY = date(2026, 1, 16)
T0 = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
TIMEOUT = 60.0


def prediction(
    batch: str, player: str, line: str, created_at: datetime, day: date = DAY
) -> Prediction:
    return Prediction(
        prediction_id=Prediction.make_id(batch, day, player, "moving_average", Decimal(line)),
        game_date=day,
        game_id="G1",
        player_lookup=player,
        system_id="moving_average",
        current_points_line=Decimal(line),
        predicted_points=20.0,
        confidence_score=60.0,
        recommendation="OVER",
        model_version="v1",
        batch_id=batch,
        created_at=created_at,
    )


def keys(client: bigquery.Client, table_id: str) -> list[tuple[str, str, str, str]]:
    sql = (
        "SELECT CAST(game_date AS STRING) AS d, player_lookup, line_key, batch_id "  # noqa: S608
        f"FROM `{table_id}` ORDER BY d, player_lookup, line_key"
    )
    rows: list[Any] = list(client.query(sql, timeout=TIMEOUT, job_retry=None).result(TIMEOUT))
    return [(r["d"], r["player_lookup"], r["line_key"], r["batch_id"]) for r in rows]


async def dead_letter(row: Prediction, reason: str) -> None:
    raise AssertionError(f"dead-lettered {row.key}: {reason}")


async def test_the_latest_view_holds_only_the_rerun_batch_of_the_date(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    first = [
        prediction("2026-01-15-r1", "curry", "25.5", T0),
        prediction("2026-01-15-r1", "curry", "26.5", T0),
        prediction("2026-01-15-r1", "lebron", "30.5", T0 + timedelta(seconds=1)),
        prediction("2026-01-16-r1", "curry", "24.5", T0, day=OTHER_DAY),
    ]
    # The rerun: curry's 26.5 line was taken down, lebron is out; a new 27.5 line.
    rerun_at = T0 + timedelta(hours=1)
    second = [
        prediction("2026-01-15-r2", "curry", "25.5", rerun_at),
        prediction("2026-01-15-r2", "curry", "27.5", rerun_at + timedelta(seconds=2)),
    ]
    async with PredictionSink(
        bq_settings, dead_letter=dead_letter, batch_rows=1, flush_seconds=0.0
    ) as sink:
        for row in first:
            sink.add(row)
        await sink.flush()
        # The rerun's rows arrive in two flushes (a batch spans flushes), then all once more
        # (a redelivery after a crash).
        sink.add(second[0])
        await sink.flush()
        sink.add(second[1])
        await sink.flush()
        for row in second:
            sink.add(row)
        await sink.flush()
        table = keys(bq_client, sink.table_id)
        latest = keys(bq_client, sink.latest_view_id)

    # What the MERGE alone leaves: the first batch's curry 26.5 and lebron rows are stale.
    assert table == [
        ("2026-01-15", "curry", "25.5", "2026-01-15-r2"),
        ("2026-01-15", "curry", "26.5", "2026-01-15-r1"),
        ("2026-01-15", "curry", "27.5", "2026-01-15-r2"),
        ("2026-01-15", "lebron", "30.5", "2026-01-15-r1"),
        ("2026-01-16", "curry", "24.5", "2026-01-16-r1"),
    ]
    assert latest == [
        ("2026-01-15", "curry", "25.5", "2026-01-15-r2"),
        ("2026-01-15", "curry", "27.5", "2026-01-15-r2"),
        ("2026-01-16", "curry", "24.5", "2026-01-16-r1"),  # another date: untouched
    ]
