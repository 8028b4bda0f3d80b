"""The audit trail in BigQuery: ``{prefix}.audit`` into table ``audit_log`` (docs/operations.md).

Every accepted mutating HTTP call is published to the audit topic before it acts
(:mod:`phaseflow.models.audit`); this sink copies those records into ``audit_log`` in the
settings' dataset, so the trail can be queried next to the data and outlives the topic's retention.

A flush is one parameterised ``MERGE`` on ``audit_id`` that inserts the records not stored yet:
re-delivered records and retried flushes change nothing. There is no staging table: the trail is
a handful of rows per minute, well within one query's parameters. A failed flush keeps its batch
and :class:`~phaseflow.sinks.base.BufferedSink` retries it with backoff; offsets are committed only
after the MERGE (:class:`~phaseflow.sinks.predictions_consumer.SinkRunner`). Calls go through the
one BigQuery policy (:class:`~phaseflow.streams.core.bigquery_clients.BigQueryCalls`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import orjson
from google.cloud import bigquery

from phaseflow.models.audit import AuditRecord
from phaseflow.sinks.base import Batch, BufferedSink, SinkMetrics
from phaseflow.sinks.bigquery_tables import ensure_tables, setup_operation
from phaseflow.sinks.predictions_consumer import SinkRunner
from phaseflow.streams.core.bigquery_clients import BigQueryCalls, RetryPolicy, make_bigquery_client
from phaseflow.streams.core.bigquery_errors import describe_bigquery_error
from phaseflow.streams.core.bigquery_permissions import Operation
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)

AUDIT_TABLE: Final = "audit_log"
#: Records per MERGE: 7 parameters each, far below BigQuery's limit of 10,000 per query.
AUDIT_BATCH_ROWS: Final = 200
AUDIT_SCHEMA: Final[tuple[bigquery.SchemaField, ...]] = (
    bigquery.SchemaField("audit_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("key_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("action", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("body_sha256", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("client", "STRING", mode="REQUIRED"),
    #: AuditRecord.at (``at`` itself is a reserved word to some SQL parsers).
    bigquery.SchemaField("called_at", "TIMESTAMP", mode="REQUIRED"),
    #: The call's summary ({"game_date": ..., "phase": ...}) as JSON text.
    bigquery.SchemaField("summary", "STRING", mode="REQUIRED"),
)
_COLUMNS: Final = tuple(field.name for field in AUDIT_SCHEMA)
_TYPES: Final = {field.name: field.field_type for field in AUDIT_SCHEMA}


def audit_merge(
    table_id: str, records: Sequence[AuditRecord]
) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    """The MERGE inserting ``records`` (unique ``audit_id``) not yet in ``table_id``, and its
    parameters. Every value is a parameter; the table id comes from settings."""
    selects = []
    params = []
    for index, record in enumerate(records):
        row = _row(record)
        selects.append("SELECT " + ", ".join(f"@{col}_{index} AS {col}" for col in _COLUMNS))
        params += [
            bigquery.ScalarQueryParameter(f"{col}_{index}", _TYPES[col], row[col])
            for col in _COLUMNS
        ]
    source = "\n  UNION ALL ".join(selects)
    cols = ", ".join(_COLUMNS)
    values = ", ".join(f"S.{col}" for col in _COLUMNS)
    sql = (
        f"MERGE `{table_id}` T\n"  # noqa: S608 -- every value is a parameter
        f"USING (\n  {source}\n) S\n"
        "ON T.audit_id = S.audit_id\n"
        f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
    )
    return sql, params


def _row(record: AuditRecord) -> dict[str, Any]:
    return {
        "audit_id": record.audit_id,
        "key_id": record.key_id,
        "action": record.action,
        "body_sha256": record.body_sha256,
        "client": record.client,
        "called_at": record.at,
        "summary": orjson.dumps(record.summary, option=orjson.OPT_SORT_KEYS).decode(),
    }


class AuditSink(BufferedSink[AuditRecord]):
    """Buffers audit records and MERGEs them into ``audit_log``."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: bigquery.Client | None = None,
        metrics: SinkMetrics | None = None,
        table: str = AUDIT_TABLE,
        flush_seconds: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            batch_rows=AUDIT_BATCH_ROWS,
            flush_seconds=settings.sink_flush_seconds if flush_seconds is None else flush_seconds,
            max_buffer_rows=settings.sink_max_buffer_rows,
            metrics=metrics,
        )
        self.settings = settings
        self._own_client = client is None
        self._client = client or make_bigquery_client(settings)
        self._timeout = settings.bigquery_timeout_seconds
        self._calls = BigQueryCalls(
            retry_policy or RetryPolicy.from_settings(settings),
            timeout_seconds=self._timeout,
            on_retry=self.note_retry,
        )
        dataset = f"{self._client.project}.{settings.bigquery_dataset}"
        self.table_id = f"{dataset}.{table}"
        self._setup_op = setup_operation(settings, dataset)
        self._merge_op = Operation("the audit MERGE", self.table_id, "bigquery.jobs.create")

    def _ensure_table(self) -> None:
        table = bigquery.Table(self.table_id, list(AUDIT_SCHEMA))
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field="called_at"
        )
        ensure_tables(self._client, self.settings, [table], timeout=self._timeout, retry=None)

    def _merge(self, records: Sequence[AuditRecord]) -> None:
        sql, params = audit_merge(self.table_id, records)
        self._client.query_and_wait(
            sql,
            job_config=bigquery.QueryJobConfig(query_parameters=params),
            api_timeout=self._timeout,
            wait_timeout=self._timeout,
            retry=None,  # type: ignore[arg-type] # retried by the policy; the library accepts None
            job_retry=None,  # type: ignore[arg-type]
        )

    async def _recreate(self) -> None:
        # The table or dataset went away (an emulator restarted, an operator dropped it).
        log.warning("%s is missing; creating it again", self.table_id)
        await self._calls.attempt(self._setup_op, self._ensure_table)

    def describe_error(self, exc: BaseException) -> str:
        return describe_bigquery_error(exc, self.settings.bigquery_endpoint)

    async def setup(self) -> None:
        await self._calls.call(self._setup_op, self._ensure_table)

    async def write_batch(self, batch: Batch[AuditRecord]) -> None:
        # A record re-delivered within one batch must not be inserted twice by one MERGE.
        records = list({entry.row.audit_id: entry.row for entry in batch.entries}.values())
        recreate = self._recreate if self.settings.bigquery_create_tables else None
        await self._calls.call(self._merge_op, lambda: self._merge(records), on_missing=recreate)

    async def close(self) -> None:
        if self._own_client:
            self._client.close()  # type: ignore[no-untyped-call]


def audit_sink_runner(
    settings: Settings,
    *,
    sink: AuditSink | None = None,
    metrics: SinkMetrics | None = None,
    group_id: str | None = None,
    **options: Any,
) -> SinkRunner[AuditRecord]:
    """A runner from ``{prefix}.audit`` into an :class:`AuditSink` (its own consumer group)."""
    return SinkRunner(
        settings,
        topic=TopicName.AUDIT,
        event_type=AuditRecord,
        sink=sink or AuditSink(settings, metrics=metrics),
        group_id=group_id or f"{settings.app_id}.bigquery-audit-sink",
        **options,
    )
