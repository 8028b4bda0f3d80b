"""The sinks' tables: created when missing, or only checked when
``PHASEFLOW_BIGQUERY_CREATE_TABLES=false`` (a service account without ``bigquery.tables.create``;
docs/bigquery.md)."""

from __future__ import annotations

from collections.abc import Sequence

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery

from phaseflow.streams.bigquery_clients import ensure_dataset
from phaseflow.streams.bigquery_permissions import Operation
from phaseflow.streams.settings import Settings, env_var


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
    check that each exists instead and raise :class:`MissingTableError` naming the first missing.
    ``retry=None`` when the caller retries the whole call itself."""
    if settings.bigquery_create_tables:
        ensure_dataset(client, settings.bigquery_dataset, timeout=timeout, retry=retry)
        for table in tables:
            client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)  # type: ignore[arg-type]
        return
    for table in tables:
        try:
            client.get_table(table.reference, retry=retry, timeout=timeout)  # type: ignore[arg-type]
        except gexc.NotFound:
            table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
            raise MissingTableError(
                f"BigQuery table {table_id} does not exist and "
                f"{env_var('bigquery_create_tables')}=false: create it (docs/bigquery.md) or "
                "let phaseflow create it"
            ) from None
