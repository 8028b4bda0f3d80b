"""The sinks' tables: created when missing, or only checked when
``PHASEFLOW_BIGQUERY_CREATE_TABLES=false`` (a service account without ``bigquery.tables.create``;
docs/bigquery.md)."""

from __future__ import annotations

from collections.abc import Sequence

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery

from phaseflow.streams.core.bigquery_clients import ensure_dataset
from phaseflow.streams.core.bigquery_permissions import Operation
from phaseflow.streams.core.settings import Settings, env_var


def setup_operation(settings: Settings, dataset_id: str) -> Operation:
    """What a sink's setup does, for a permission error."""
    if settings.bigquery_create_tables:
        return Operation("creating the dataset and tables", dataset_id, "bigquery.tables.create")
    return Operation("checking that the tables exist", dataset_id, "bigquery.tables.get")


class MissingTableError(RuntimeError):
    """A table the sink writes is missing and the sink may not create it."""


def ensure_tables(
    client: bigquery.Client,
    settings: Settings,
    tables: Sequence[bigquery.Table],
    *,
    timeout: float,
    retry: Retry | None,
) -> None:
    """Create the dataset and ``tables`` (views too) unless they exist; with table creation off,
    raise :class:`MissingTableError` naming the first missing one instead. Each is looked up
    first, so what exists needs only ``bigquery.*.get``. ``retry=None`` when the caller retries
    the whole call itself."""
    create = settings.bigquery_create_tables
    if create:
        ensure_dataset(client, settings.bigquery_dataset, timeout=timeout, retry=retry)
    for table in tables:
        if _exists(client, table, timeout=timeout, retry=retry):
            continue
        if not create:
            table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
            raise MissingTableError(
                f"BigQuery table {table_id} does not exist and "
                f"{env_var('bigquery_create_tables')}=false: create it (docs/bigquery.md) or "
                "let phaseflow create it"
            )
        client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)  # type: ignore[arg-type]


def _exists(
    client: bigquery.Client, table: bigquery.Table, *, timeout: float, retry: Retry | None
) -> bool:
    try:
        client.get_table(table.reference, retry=retry, timeout=timeout)  # type: ignore[arg-type]
    except gexc.NotFound:
        return False
    return True
