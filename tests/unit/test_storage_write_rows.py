"""The Storage Write row type built from the staging schema, and the encoding of sink rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from google.cloud import bigquery
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from phaseflow.models.events import Prediction
from phaseflow.sinks.bigquery_predictions import prediction_row
from phaseflow.sinks.merge_sql import STAGING_SCHEMA
from phaseflow.sinks.storage_write_rows import RowEncoder, RowRejectedError, row_descriptor

STAGED_AT = datetime(2026, 1, 15, 18, 0, 0, 250_000, tzinfo=UTC)


def prediction(line: Decimal | None) -> Prediction:
    return Prediction(
        prediction_id="p1",
        game_date=date(2026, 1, 15),
        game_id="G1",
        player_lookup="lebronjames",
        system_id="xgb",
        current_points_line=line,
        predicted_points=27.25,
        confidence_score=61.0,
        recommendation="NO_LINE" if line is None else "OVER",
        model_version="v1",
        batch_id="b1",
        created_at=datetime(2026, 1, 15, 17, 0, 0, 123_456, tzinfo=UTC),
    )


def decoded(encoder: RowEncoder, data: bytes) -> object:
    """Parse ``data`` with a message class built independently from the encoder's descriptor."""
    file = descriptor_pb2.FileDescriptorProto(name="check.proto", syntax="proto2")
    file.message_type.add().CopyFrom(encoder.descriptor)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName("Row"))()
    message.ParseFromString(data)
    return message


def test_the_row_type_has_one_field_per_staging_column_in_order_with_its_wire_type() -> None:
    descriptor = row_descriptor(STAGING_SCHEMA)
    kinds = descriptor_pb2.FieldDescriptorProto
    assert [f.name for f in descriptor.field] == [c.name for c in STAGING_SCHEMA]
    assert [f.number for f in descriptor.field] == list(range(1, len(STAGING_SCHEMA) + 1))
    by_name = {f.name: f.type for f in descriptor.field}
    assert by_name["game_date"] == kinds.TYPE_INT32  # days since the epoch
    assert by_name["created_at"] == kinds.TYPE_INT64  # microseconds
    assert by_name["current_points_line"] == kinds.TYPE_STRING  # NUMERIC, exact
    assert by_name["predicted_points"] == kinds.TYPE_DOUBLE
    assert by_name["staged_seq"] == kinds.TYPE_INT64


def test_a_column_without_an_encoding_is_refused_when_the_type_is_built() -> None:
    with pytest.raises(ValueError, match="no Storage Write encoding for column shape"):
        row_descriptor([bigquery.SchemaField("shape", "GEOGRAPHY")])


def test_a_prediction_row_encodes_to_the_values_bigquery_stores() -> None:
    encoder = RowEncoder(STAGING_SCHEMA)
    row = prediction_row(prediction(Decimal("25.5")), flush_id="f1", seq=7, staged_at=STAGED_AT)
    message = decoded(encoder, encoder.encode(row))
    assert message.game_date == (date(2026, 1, 15) - date(1970, 1, 1)).days  # type: ignore[attr-defined]
    assert message.created_at == int(  # type: ignore[attr-defined]
        datetime(2026, 1, 15, 17, 0, tzinfo=UTC).timestamp() * 1_000_000 + 123_456
    )
    assert message.staged_at % 1_000_000 == 250_000  # type: ignore[attr-defined]
    assert message.current_points_line == "25.5"  # type: ignore[attr-defined]
    assert message.predicted_points == 27.25  # type: ignore[attr-defined]
    assert message.staged_seq == 7  # type: ignore[attr-defined]
    assert message.line_key == "25.5"  # type: ignore[attr-defined]


def test_a_null_value_is_an_unset_field() -> None:
    encoder = RowEncoder(STAGING_SCHEMA)
    row = prediction_row(prediction(None), flush_id="f1", seq=1, staged_at=STAGED_AT)
    message = decoded(encoder, encoder.encode(row))
    assert not message.HasField("current_points_line")  # type: ignore[attr-defined]
    assert message.HasField("predicted_points")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "why"),
    [("1e40", "outside NUMERIC's range"), ("1.0000000001", "9 digits after the point")],
)
def test_a_value_numeric_cannot_hold_rejects_the_row_before_it_is_sent(line: str, why: str) -> None:
    encoder = RowEncoder(STAGING_SCHEMA)
    poison = prediction(Decimal("25.5")).model_copy(update={"current_points_line": Decimal(line)})
    row = prediction_row(poison, flush_id="f1", seq=1, staged_at=STAGED_AT)
    with pytest.raises(RowRejectedError, match=why):
        encoder.encode(row)
