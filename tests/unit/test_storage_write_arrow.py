"""Arrow rows for Storage Write staging: the values they carry, the rows refused before sending,
and the requests (schema once, one RecordBatch each, within the size limit)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from google.cloud import bigquery

from phaseflow.models.events import Prediction
from phaseflow.sinks import storage_write_arrow
from phaseflow.sinks.bigquery_predictions import prediction_columns, prediction_row
from phaseflow.sinks.merge_sql import STAGING_SCHEMA
from phaseflow.sinks.storage_write_arrow import ArrowRows, arrow_schema
from phaseflow.streams.core.settings import Settings

STAGED_AT = datetime(2026, 1, 15, 18, 0, 0, 250_000, tzinfo=UTC)


def prediction(line: Decimal | None, player: str = "lebronjames") -> Prediction:
    return Prediction(
        prediction_id=f"p-{player}",
        game_date=date(2026, 1, 15),
        game_id="G1",
        player_lookup=player,
        system_id="xgb",
        current_points_line=line,
        predicted_points=27.25,
        confidence_score=61.0,
        recommendation="NO_LINE" if line is None else "OVER",
        model_version="v1",
        batch_id="b1",
        created_at=datetime(2026, 1, 15, 17, 0, 0, 123_456, tzinfo=UTC),
    )


def rows_of(*lines: str | None) -> list[dict[str, Any]]:
    return [
        prediction_row(
            prediction(None if line is None else Decimal(line), f"player{seq}"),
            flush_id="f1",
            seq=seq,
            staged_at=STAGED_AT,
        )
        for seq, line in enumerate(lines, start=1)
    ]


def read(rows: ArrowRows, batch: bytes) -> pa.Table:
    """What a receiver makes of one request: the schema message, then the batch."""
    return pa.ipc.open_stream(io.BytesIO(rows.serialized_schema + batch)).read_all()


def test_a_prediction_row_carries_the_values_bigquery_stores() -> None:
    table, refused = ArrowRows(STAGING_SCHEMA).encode(rows_of("25.5", None))
    assert refused == {}
    first, second = table.to_pylist()
    assert first["game_date"] == date(2026, 1, 15)
    assert first["created_at"] == datetime(2026, 1, 15, 17, 0, 0, 123_456, tzinfo=UTC)
    assert first["staged_at"] == STAGED_AT
    assert first["current_points_line"] == Decimal("25.5")
    assert first["predicted_points"] == 27.25
    assert first["staged_seq"] == 1
    assert first["line_key"] == "25.5"
    assert second["current_points_line"] is None
    assert second["line_key"] == "NO_LINE"


def test_the_schema_follows_the_table_types_and_required_columns_are_not_nullable() -> None:
    schema = arrow_schema(STAGING_SCHEMA)
    assert schema.field("game_date").type == pa.date32()
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("current_points_line").type == pa.decimal128(38, 9)
    assert schema.field("staged_seq").type == pa.int64()
    assert not schema.field("prediction_id").nullable
    assert schema.field("current_points_line").nullable
    with pytest.raises(ValueError, match="no Storage Write Arrow type for column shape"):
        arrow_schema([bigquery.SchemaField("shape", "GEOGRAPHY")])


@pytest.mark.parametrize(
    ("line", "why"),
    [("1e40", "outside NUMERIC's range"), ("1.0000000001", "9 digits after the point")],
)
def test_a_value_numeric_cannot_hold_refuses_that_row_alone(line: str, why: str) -> None:
    rows = rows_of("20.5", "20.5", "21.5")
    rows[1]["current_points_line"] = line  # a Prediction would not hold it either
    table, refused = ArrowRows(STAGING_SCHEMA).encode(rows)
    assert list(refused) == [1]
    assert why in refused[1]
    assert table.column("staged_seq").to_pylist() == [1, 3]
    assert table.column("current_points_line").to_pylist() == [Decimal("20.5"), Decimal("21.5")]


def test_a_timestamp_without_a_zone_refuses_the_row() -> None:
    rows = rows_of("20.5", "21.5")
    rows[0]["created_at"] = "2026-01-15T17:00:00"
    table, refused = ArrowRows(STAGING_SCHEMA).encode(rows)
    assert list(refused) == [0]
    assert "without a time zone" in refused[0]
    assert table.column("staged_seq").to_pylist() == [2]


def test_requests_carry_the_schema_once_and_every_row_in_order() -> None:
    rows = ArrowRows(STAGING_SCHEMA)
    table, _ = rows.encode(rows_of(*["20.5"] * 4500))
    requests = rows.requests(table)
    assert [start for start, _ in requests] == [0, 2000, 4000]
    first = requests[0][1].arrow_rows
    assert bytes(first.writer_schema.serialized_schema) == rows.serialized_schema
    assert all(not r.arrow_rows.writer_schema.serialized_schema for _, r in requests[1:])
    seqs = [
        seq
        for _, request in requests
        for seq in read(rows, bytes(request.arrow_rows.rows.serialized_record_batch))
        .column("staged_seq")
        .to_pylist()
    ]
    assert seqs == list(range(1, 4501))


def test_a_batch_over_the_size_limit_is_halved_until_it_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = ArrowRows(STAGING_SCHEMA)
    table, _ = rows.encode(rows_of(*["20.5"] * 100))
    whole = len(rows.record_batch(table))
    monkeypatch.setattr(storage_write_arrow, "BYTES_PER_REQUEST", whole // 3)
    requests = rows.requests(table)
    sizes = [len(r.arrow_rows.rows.serialized_record_batch) for _, r in requests]
    assert len(requests) > 3
    assert max(sizes) <= whole // 3
    parts = [
        (start, read(rows, bytes(r.arrow_rows.rows.serialized_record_batch)))
        for start, r in requests
    ]
    # Each request's start is the offset of its first row; together they hold every row once.
    assert all(part.column("staged_seq")[0].as_py() == start + 1 for start, part in parts)
    seqs = [seq for _, part in parts for seq in part.column("staged_seq").to_pylist()]
    assert seqs == list(range(1, 101))


def test_the_sinks_columns_make_the_same_arrow_rows_as_its_row_dicts() -> None:
    predictions = [prediction(Decimal("25.5"), "a"), prediction(None, "b")]
    seqs = [3, 4]
    from_dicts, _ = ArrowRows(STAGING_SCHEMA).encode(
        [
            prediction_row(p, flush_id="f1", seq=seq, staged_at=STAGED_AT)
            for p, seq in zip(predictions, seqs, strict=True)
        ]
    )
    from_columns, refused = ArrowRows(STAGING_SCHEMA).encode_columns(
        prediction_columns(predictions, flush_id="f1", seqs=seqs, staged_at=STAGED_AT), 2
    )
    assert refused == {}
    assert from_columns.equals(from_dicts)
    assert list(prediction_columns(predictions, flush_id="f", seqs=seqs, staged_at=STAGED_AT)) == [
        column.name for column in STAGING_SCHEMA
    ]


def test_python_values_a_column_cannot_hold_refuse_their_rows_alone() -> None:
    predictions = [prediction(Decimal("20.5"), f"p{i}") for i in range(4)]
    columns = prediction_columns(predictions, flush_id="f1", seqs=[1, 2, 3, 4], staged_at=STAGED_AT)
    columns["current_points_line"][1] = Decimal("1e40")
    columns["created_at"][2] = datetime(2026, 1, 15, 17)  # no time zone  # noqa: DTZ001
    table, refused = ArrowRows(STAGING_SCHEMA).encode_columns(columns, 4)
    assert sorted(refused) == [1, 2]
    assert "outside NUMERIC's range" in refused[1]
    assert "without a time zone" in refused[2]
    assert table.column("staged_seq").to_pylist() == [1, 4]


@pytest.mark.parametrize(
    ("endpoints", "staging"),
    [
        ({}, "storage_write_arrow"),  # Google's API
        ({"bigquery_endpoint": "http://emulator:9050"}, "insert_all"),  # its gRPC port unknown
        (
            {
                "bigquery_endpoint": "http://emulator:9050",
                "bigquery_write_endpoint": "emulator:9060",
            },
            "storage_write_arrow",
        ),
    ],
)
def test_arrow_staging_is_the_default_wherever_the_storage_write_endpoint_is_known(
    endpoints: dict[str, str], staging: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ENDPOINT", "WRITE_ENDPOINT"):
        monkeypatch.delenv(f"PHASEFLOW_BIGQUERY_{name}", raising=False)
    monkeypatch.delenv("PHASEFLOW_SINK_STAGING", raising=False)
    assert Settings(**endpoints).sink_staging == staging  # type: ignore[arg-type]
    assert Settings(**endpoints, sink_staging="storage_write").sink_staging == "storage_write"  # type: ignore[arg-type]
