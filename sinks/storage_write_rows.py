"""Rows for the BigQuery Storage Write API as protobuf: a message type built from a table schema
at run time (no hand-written .proto per table), the encoding of the sink's JSON-form rows into it,
and the AppendRows requests that carry them (:class:`ProtoRows`). The checks of a value against
its column (:func:`date_days`, :func:`timestamp_micros`, :func:`numeric_decimal`) are shared
with the Arrow rows (:mod:`phaseflow.sinks.storage_write_arrow`).

Wire types follow BigQuery's Storage Write type table: DATE as int32 days since 1970-01-01,
TIMESTAMP as int64 microseconds since the epoch, NUMERIC as its decimal string (exact), INT64,
FLOAT64 and STRING as themselves. Every field is proto2 ``optional``, so an unset field is NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_Field = descriptor_pb2.FieldDescriptorProto
#: Rows and bytes per AppendRows request (BigQuery's limit is 10 MB per request).
ROWS_PER_REQUEST: Final = 2000
BYTES_PER_REQUEST: Final = 8 * 1024 * 1024
_EPOCH_DAY: Final = date(1970, 1, 1).toordinal()
#: NUMERIC holds 29 digits before the point and 9 after; BigQuery rejects a row beyond that.
_NUMERIC_LIMIT: Final = Decimal("1e29")


class RowRejectedError(ValueError):
    """A row BigQuery would reject (a value its column cannot hold); the row is dead-lettered."""


def date_days(value: str) -> int:
    """A DATE as days since 1970-01-01."""
    return date.fromisoformat(value).toordinal() - _EPOCH_DAY


def timestamp_micros(value: str) -> int:
    """A TIMESTAMP as microseconds since the epoch; one without a time zone is refused."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise RowRejectedError(f"TIMESTAMP without a time zone: {value!r}")
    return round(moment.timestamp() * 1_000_000)


def numeric_decimal(value: str) -> Decimal:
    """A NUMERIC value, refused beyond its 29 digits before and 9 after the point."""
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise RowRejectedError(f"not a NUMERIC: {value!r}") from exc
    if not number.is_finite() or abs(number) >= _NUMERIC_LIMIT:
        raise RowRejectedError(f"{value} is outside NUMERIC's range (29 digits before the point)")
    if number != number.quantize(Decimal("1e-9")):
        raise RowRejectedError(f"{value} has more than NUMERIC's 9 digits after the point")
    return number


def _numeric_text(value: str) -> str:
    numeric_decimal(value)
    return value


#: BigQuery type -> (protobuf field type, JSON-form value -> protobuf value).
_TYPES: Final[dict[str, tuple[int, Callable[[Any], Any]]]] = {
    "STRING": (_Field.TYPE_STRING, str),
    "INT64": (_Field.TYPE_INT64, int),
    "INTEGER": (_Field.TYPE_INT64, int),
    "FLOAT64": (_Field.TYPE_DOUBLE, float),
    "FLOAT": (_Field.TYPE_DOUBLE, float),
    "BOOL": (_Field.TYPE_BOOL, bool),
    "BOOLEAN": (_Field.TYPE_BOOL, bool),
    "DATE": (_Field.TYPE_INT32, date_days),
    "TIMESTAMP": (_Field.TYPE_INT64, timestamp_micros),
    "NUMERIC": (_Field.TYPE_STRING, _numeric_text),
}


def row_descriptor(
    schema: Sequence[bigquery.SchemaField], name: str = "Row"
) -> descriptor_pb2.DescriptorProto:
    """The message type of one row of ``schema``: a field per column, numbered in order."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for number, column in enumerate(schema, start=1):
        kind = _TYPES.get(column.field_type.upper())
        if kind is None or column.mode == "REPEATED":
            raise ValueError(
                f"no Storage Write encoding for column {column.name} ({column.field_type})"
            )
        message.field.add(
            name=column.name, number=number, type=kind[0], label=_Field.LABEL_OPTIONAL
        )
    return message


class RowEncoder:
    """Serializes rows (``{column: JSON-form value}``, as insertAll takes them) of one schema."""

    def __init__(self, schema: Sequence[bigquery.SchemaField]) -> None:
        self.descriptor = row_descriptor(schema)
        file = descriptor_pb2.FileDescriptorProto(name="phaseflow_row.proto", syntax="proto2")
        file.message_type.add().CopyFrom(self.descriptor)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        self._message = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(self.descriptor.name)
        )
        self._convert = {column.name: _TYPES[column.field_type.upper()][1] for column in schema}

    def encode(self, row: Mapping[str, Any]) -> bytes:
        """The serialized row; :class:`RowRejectedError` for a value BigQuery would refuse."""
        values = {
            column: convert(row[column])
            for column, convert in self._convert.items()
            if row.get(column) is not None
        }
        data: bytes = self._message(**values).SerializeToString()
        return data


class ProtoRows:
    """The Storage Write row format ``storage_write``: each row a serialized protobuf message;
    the first request of a connection carries the message type (``writer_schema``)."""

    name: Final = "protobuf"

    def __init__(self, schema: Sequence[bigquery.SchemaField]) -> None:
        self._encoder = RowEncoder(schema)

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[bytes], dict[int, str]]:
        """The rows BigQuery can take, serialized, in order; ``{index: reason}`` of the others
        (a value their column cannot hold)."""
        encoded: list[bytes] = []
        refused: dict[int, str] = {}
        for index, row in enumerate(rows):
            try:
                encoded.append(self._encoder.encode(row))
            except RowRejectedError as exc:
                refused[index] = str(exc)
        return encoded, refused

    def select(self, encoded: list[bytes], keep: Sequence[int]) -> list[bytes]:
        """The rows at ``keep`` (indexes into ``encoded``), in that order."""
        return [encoded[i] for i in keep]

    def requests(self, rows: Sequence[bytes]) -> list[tuple[int, types.AppendRowsRequest]]:
        """The requests carrying ``rows`` (≤ ROWS_PER_REQUEST rows, ≤ BYTES_PER_REQUEST bytes
        each), each with the index of its first row; no stream or offset set yet."""
        out: list[tuple[int, types.AppendRowsRequest]] = []
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and end - start < ROWS_PER_REQUEST:
                if end > start and size + len(rows[end]) > BYTES_PER_REQUEST:
                    break
                size += len(rows[end])
                end += 1
            data = types.AppendRowsRequest.ProtoData(
                rows=types.ProtoRows(serialized_rows=list(rows[start:end]))
            )
            if start == 0:  # the first request of a connection names the row type (a retried
                # call sends every request again, on a new connection, from this one)
                data.writer_schema = types.ProtoSchema(proto_descriptor=self._encoder.descriptor)
            out.append((start, types.AppendRowsRequest(proto_rows=data)))
            start = end
        return out
