"""Rows for the BigQuery Storage Write API as Apache Arrow (``AppendRowsRequest.arrow_rows``):
the Arrow schema of a table schema, and requests that each carry one serialized RecordBatch.

Why Arrow besides protobuf: a RecordBatch is columnar, so the receiving side reads a request's
rows without a per-row decode (the emulator decodes protobuf rows one by one in Python, which is
what bounds protobuf staging there; docs/bigquery-sink.md). Arrow types follow BigQuery's Storage
Write type table: DATE as date32, TIMESTAMP as timestamp[us, UTC], NUMERIC as decimal128(38, 9),
INT64, FLOAT64, BOOL and STRING as themselves; a REQUIRED column is a non-nullable field. Values
are checked one by one, as for protobuf (:mod:`phaseflow.sinks.storage_write_rows`), so a row a
column cannot hold is refused before sending and only that row is dead-lettered.
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


class ArrowRows:
    """The Storage Write row format ``storage_write_arrow``: rows are converted one by one
    (checked against their column) and sent as one RecordBatch per request; the first request
    of a connection carries the Arrow schema (``writer_schema``)."""

    name: Final = "Arrow"

    def __init__(self, schema: Sequence[bigquery.SchemaField]) -> None:
        self.schema = arrow_schema(schema)
        self.serialized_schema: bytes = self.schema.serialize().to_pybytes()
        self._columns = [(column.name, _TYPES[column.field_type.upper()][1]) for column in schema]

    def convert(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row's values as Arrow takes them;
        :class:`~phaseflow.sinks.storage_write_rows.RowRejectedError` for a value BigQuery
        would refuse."""
        return tuple(
            None if (value := row.get(name)) is None else convert(value)
            for name, convert in self._columns
        )

    def record_batch(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        """``rows`` as one IPC-serialized RecordBatch (no schema message: that goes once per
        connection, in ``writer_schema``)."""
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in self.schema]
        )
        arrays = [
            pa.array(values, type=field.type)
            for values, field in zip(columns, self.schema, strict=True)
        ]
        data: bytes = (
            pa.RecordBatch.from_arrays(arrays, schema=self.schema).serialize().to_pybytes()
        )
        return data

    def requests(
        self, rows: Sequence[tuple[Any, ...]]
    ) -> list[tuple[int, types.AppendRowsRequest]]:
        """The requests carrying ``rows`` (≤ ROWS_PER_REQUEST rows, ≤ BYTES_PER_REQUEST bytes
        each: a batch over the size is halved), each with the index of its first row; no
        stream or offset set yet."""
        batches: list[tuple[int, bytes]] = []
        pending = [
            (start, min(start + ROWS_PER_REQUEST, len(rows)))
            for start in range(0, len(rows), ROWS_PER_REQUEST)
        ]
        while pending:
            start, end = pending.pop(0)
            data = self.record_batch(rows[start:end])
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
