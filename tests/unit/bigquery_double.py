"""A BigQuery client double for unit tests: the client's methods the sinks and query runner call,
answering from memory or raising the real google.api_core exception types a test queues."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from google.api_core import exceptions as gexc
from google.cloud import bigquery


def forbidden(message: str, reason: str = "accessDenied") -> gexc.Forbidden:
    """The 403 google-cloud-bigquery raises (message and errors as BigQuery sends them)."""
    return gexc.Forbidden(message, errors=[{"reason": reason, "message": message}])  # type: ignore[no-untyped-call]


@dataclass
class _Rows:
    """What ``query_and_wait`` returns: rows and, for DML, the affected count."""

    rows: list[dict[str, Any]]
    num_dml_affected_rows: int | None = None

    def __iter__(self) -> Any:
        return iter(_Row(row) for row in self.rows)


@dataclass
class _Row:
    data: dict[str, Any]

    def items(self) -> Any:
        return self.data.items()


@dataclass
class ClientDouble:
    """Records every call with the ``retry``/``job_retry`` it was given; ``fail[method]`` holds
    exceptions raised by that method's next calls, one per call, before it answers normally."""

    project: str = "p"
    location: str | None = None
    fail: dict[str, deque[BaseException]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)
    query_rows: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def failing(self, method: str, *errors: BaseException) -> ClientDouble:
        self.fail.setdefault(method, deque()).extend(errors)
        return self

    def as_client(self) -> bigquery.Client:
        return cast("bigquery.Client", self)

    def named(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == method]

    def _call(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        pending = self.fail.get(method)
        if pending:
            raise pending.popleft()

    def get_dataset(self, dataset: str, **kwargs: Any) -> bigquery.Dataset:
        self._call("get_dataset", dataset=dataset, **kwargs)
        if dataset not in self.existing:
            raise gexc.NotFound(f"Not found: Dataset {dataset}")  # type: ignore[no-untyped-call]
        return bigquery.Dataset(dataset)

    def create_dataset(self, dataset: str, **kwargs: Any) -> bigquery.Dataset:
        self._call("create_dataset", dataset=dataset, **kwargs)
        self.existing.add(dataset)
        return bigquery.Dataset(dataset)

    def create_table(self, table: bigquery.Table, **kwargs: Any) -> bigquery.Table:
        self._call("create_table", table=table, **kwargs)
        self.existing.add(f"{table.project}.{table.dataset_id}.{table.table_id}")
        return table

    def get_table(self, ref: bigquery.TableReference, **kwargs: Any) -> bigquery.Table:
        self._call("get_table", ref=ref, **kwargs)
        table_id = f"{ref.project}.{ref.dataset_id}.{ref.table_id}"
        if table_id not in self.existing:
            raise gexc.NotFound(f"Not found: Table {table_id}")  # type: ignore[no-untyped-call]
        return bigquery.Table(ref)

    def insert_rows_json(self, table: str, rows: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
        self._call("insert_rows_json", table=table, rows=rows, **kwargs)
        return []

    def query_and_wait(self, query: str, **kwargs: Any) -> _Rows:
        self._call("query_and_wait", query=query, **kwargs)
        if query.lstrip().startswith(("MERGE", "DELETE")):
            return _Rows([], num_dml_affected_rows=0)
        return _Rows(list(self.query_rows))

    def close(self) -> None:
        self.closed = True
