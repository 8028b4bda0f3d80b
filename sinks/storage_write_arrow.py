"""Rows for the BigQuery Storage Write API as Apache Arrow (``AppendRowsRequest.arrow_rows``):
the Arrow schema of a table schema, and requests that each carry one serialized RecordBatch.

Why Arrow besides protobuf: a RecordBatch is columnar, so the receiving side reads a request's
rows without a per-row decode (the emulator decodes protobuf rows one by one in Python, which is
what bounds protobuf staging there; docs/bigquery-sink.md). Arrow types follow BigQuery's Storage
Write type table: DATE as date32, TIMESTAMP as timestamp[us, UTC], NUMERIC as decimal128(38, 9),
INT64, FLOAT64, BOOL and STRING as themselves; a REQUIRED column is a non-nullable field.

A flush's rows are converted a column at a time: DATE, TIMESTAMP and NUMERIC values (text in the
sink's rows) are cast by Arrow, whose decimal128(38, 9) is exactly NUMERIC's range and scale and
whose TIMESTAMP parse wants a zone offset. Only when a column's cast fails is that column converted
value by value with the protobuf path's checks (:mod:`phaseflow.sinks.storage_write_rows`), which
names each value a column cannot hold: that row alone is refused before sending (dead-lettered),
the rest are staged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class ArrowRows:
    """The Storage Write row format ``storage_write_arrow``: rows are converted one by one
    (checked against their column) and sent as one RecordBatch per request; the first request
    of a connection carries the Arrow schema (``writer_schema``)."""

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
        refused: dict[int, str] = {}
        arrays = []
        for (name, cast, convert), field in zip(self._columns, self.schema, strict=True):
            values = [row.get(name) for row in rows]
            try:
                array = (
                    pa.array(values, type=pa.string()).cast(field.type)
                    if cast
                    else pa.array(values, type=field.type)
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # find the values at fault
                array = pa.array(self._one_by_one(values, convert, refused), type=field.type)
            arrays.append(array)
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if refused:
            table = self.select(table, [i for i in range(len(rows)) if i not in refused])
        return table, refused

    @staticmethod
    def _one_by_one(
        values: Sequence[Any], convert: Callable[[Any], Any], refused: dict[int, str]
    ) -> list[Any]:
        converted: list[Any] = []
        for index, value in enumerate(values):
            try:
                converted.append(None if value is None else convert(value))
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
