"""Rows for the BigQuery Storage Write API as Apache Arrow (``AppendRowsRequest.arrow_rows``):
the Arrow schema of a table schema, and requests that each carry one serialized RecordBatch.

Why Arrow besides protobuf: a RecordBatch is columnar, so the receiving side reads a request's
rows without a per-row decode (the emulator decodes protobuf rows one by one in Python, which is
what bounds protobuf staging there; docs/bigquery-sink.md). Arrow types follow BigQuery's Storage
Write type table: DATE as date32, TIMESTAMP as timestamp[us, UTC], NUMERIC as decimal128(38, 9),
INT64, FLOAT64, BOOL and STRING as themselves; a REQUIRED column is a non-nullable field.

A flush's rows are converted a column at a time, from the sink's row dicts (JSON form: DATE,
TIMESTAMP and NUMERIC as text, cast by Arrow) or, faster, from its columns of Python values (date,
aware datetime, Decimal; :meth:`ArrowRows.encode_columns`). Arrow's decimal128(38, 9) is exactly
NUMERIC's range and scale, and its TIMESTAMP parse wants a zone offset (a naive datetime is
checked for). Only when a column's conversion fails is it converted value by value with the
protobuf path's checks (:mod:`phaseflow.sinks.storage_write_rows`), which name each value a column
cannot hold: that row alone is refused before sending (dead-lettered), the rest are staged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types

from phaseflow.sinks.storage_write_rows import (
    BYTES_PER_REQUEST,
    ROWS_PER_REQUEST,
    RowRejectedError,
    date_days,
    numeric_decimal,
    timestamp_micros,
)

#: BigQuery type -> (Arrow type, JSON-form value -> the value Arrow takes for it).
_TYPES: Final[dict[str, tuple[pa.DataType, Callable[[Any], Any]]]] = {
    "STRING": (pa.string(), str),
    "INT64": (pa.int64(), int),
    "INTEGER": (pa.int64(), int),
    "FLOAT64": (pa.float64(), float),
    "FLOAT": (pa.float64(), float),
    "BOOL": (pa.bool_(), bool),
    "BOOLEAN": (pa.bool_(), bool),
    "DATE": (pa.date32(), date_days),
    "TIMESTAMP": (pa.timestamp("us", tz="UTC"), timestamp_micros),
    "NUMERIC": (pa.decimal128(38, 9), numeric_decimal),
}


def arrow_schema(schema: Sequence[bigquery.SchemaField]) -> pa.Schema:
    """The Arrow schema of ``schema``: a field per column, in order."""
    fields = []
    for column in schema:
        kind = _TYPES.get(column.field_type.upper())
        if kind is None or column.mode == "REPEATED":
            raise ValueError(
                f"no Storage Write Arrow type for column {column.name} ({column.field_type})"
            )
        fields.append(pa.field(column.name, kind[0], nullable=column.mode != "REQUIRED"))
    return pa.schema(fields)


#: Columns whose JSON-form text Arrow casts to their type (the rest are built from the values).
_CAST: Final = frozenset({"DATE", "TIMESTAMP", "NUMERIC"})


def _json_form(value: Any) -> Any:
    """A Python value as the sink's row dicts hold it (what the value-by-value checks take)."""
    if isinstance(value, date):  # and datetime
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _array(values: Sequence[Any], field: pa.Field, *, cast: bool) -> pa.Array:
    """``values`` as an array of ``field``'s type; ArrowInvalid/ArrowTypeError if one does not
    fit (or, for TIMESTAMP, is a datetime without a zone, which Arrow would take as UTC)."""
    first = next((value for value in values if value is not None), None)
    if cast and isinstance(first, str):
        return pa.array(values, type=pa.string()).cast(field.type)
    if isinstance(first, datetime) and any(
        value is not None and value.tzinfo is None for value in values
    ):
        raise pa.ArrowInvalid(f"{field.name}: a TIMESTAMP without a time zone")
    return pa.array(values, type=field.type)


class ArrowRows:
    """The Storage Write row format ``storage_write_arrow``: rows are converted a column at a
    time (a column that does not convert is checked value by value) and sent as one RecordBatch
    per request; the first request of a connection carries the Arrow schema (``writer_schema``)."""

    name: Final = "Arrow"

    def __init__(self, schema: Sequence[bigquery.SchemaField]) -> None:
        self.schema = arrow_schema(schema)
        self.serialized_schema: bytes = self.schema.serialize().to_pybytes()
        self._columns = [
            (column.name, column.field_type.upper() in _CAST, _TYPES[column.field_type.upper()][1])
            for column in schema
        ]

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, dict[int, str]]:
        """The rows BigQuery can take, as one table, in order; ``{index: reason}`` of the others
        (a value their column cannot hold)."""
        columns = {name: [row.get(name) for row in rows] for name, _, _ in self._columns}
        return self.encode_columns(columns, len(rows))

    def encode_columns(
        self, columns: Mapping[str, Sequence[Any]], count: int
    ) -> tuple[pa.Table, dict[int, str]]:
        """Like :meth:`encode`, from ``count`` rows given a column at a time (every column of
        the schema, values in JSON form or as Python values)."""
        refused: dict[int, str] = {}
        arrays = []
        for (name, cast, convert), field in zip(self._columns, self.schema, strict=True):
            values = columns[name]
            if len(values) != count:
                raise ValueError(f"column {name} has {len(values)} values for {count} rows")
            try:
                array = _array(values, field, cast=cast)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # find the values at fault
                array = pa.array(self._one_by_one(values, convert, refused), type=field.type)
            arrays.append(array)
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if refused:
            table = self.select(table, [i for i in range(count) if i not in refused])
        return table, refused

    @staticmethod
    def _one_by_one(
        values: Sequence[Any], convert: Callable[[Any], Any], refused: dict[int, str]
    ) -> list[Any]:
        converted: list[Any] = []
        for index, value in enumerate(values):
            try:
                converted.append(None if value is None else convert(_json_form(value)))
            except RowRejectedError as exc:
                refused.setdefault(index, str(exc))
                converted.append(None)
        return converted

    def select(self, table: pa.Table, keep: Sequence[int]) -> pa.Table:
        """The rows at ``keep`` (indexes into ``table``), in that order."""
        selected: pa.Table = table.take(pa.array(keep, type=pa.int64()))
        return selected

    def record_batch(self, table: pa.Table) -> bytes:
        """``table`` as one IPC-serialized RecordBatch (no schema message: that goes once per
        connection, in ``writer_schema``)."""
        batch = table.combine_chunks().to_batches()
        merged = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=self.schema)
        data: bytes = merged.serialize().to_pybytes()
        return data

    def requests(self, table: pa.Table) -> list[tuple[int, types.AppendRowsRequest]]:
        """The requests carrying ``table``'s rows (≤ ROWS_PER_REQUEST rows, ≤ BYTES_PER_REQUEST
        bytes each: a batch over the size is halved), each with the index of its first row; no
        stream or offset set yet."""
        rows = table.num_rows
        batches: list[tuple[int, bytes]] = []
        pending = [
            (start, min(start + ROWS_PER_REQUEST, rows))
            for start in range(0, rows, ROWS_PER_REQUEST)
        ]
        while pending:
            start, end = pending.pop(0)
            data = self.record_batch(table.slice(start, end - start))
            if len(data) > BYTES_PER_REQUEST and end - start > 1:
                middle = (start + end) // 2
                pending[:0] = [(start, middle), (middle, end)]
                continue
            batches.append((start, data))
        out: list[tuple[int, types.AppendRowsRequest]] = []
        for start, data in batches:
            arrow_data = types.AppendRowsRequest.ArrowData(
                rows=types.ArrowRecordBatch(serialized_record_batch=data)
            )
            if start == 0:  # the first request of a connection names the schema (a retried
                # call sends every request again, on a new connection, from this one)
                arrow_data.writer_schema = types.ArrowSchema(
                    serialized_schema=self.serialized_schema
                )
            out.append((start, types.AppendRowsRequest(arrow_rows=arrow_data)))
        return out
