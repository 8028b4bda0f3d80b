"""The BigQuery sink for predictions: staging inserts, then one MERGE per flush.

Described in docs/bigquery-sink.md.

A flush (due at ``batch_rows`` rows or after ``flush_seconds``; it takes up to
``max_batch_rows`` of the predictions buffered by then, so a backlog goes in one):

1. ``insert_rows_json`` into ``player_prop_predictions_staging``, at most 500 rows per request.
   Each row carries the flush's ``flush_id``, its ``staged_seq`` and an insertId
   ``{flush_id}:{seq}``: a retried request re-sends the same ids (BigQuery drops the copies; the
   emulator keeps them, and the MERGE's dedup makes them harmless). The insertId includes the
   flush id on purpose: a prediction re-delivered in a later flush must not be dropped as a copy
   of a row whose flush never merged. Rows BigQuery rejects as invalid go to dead letters.
   With ``PHASEFLOW_SINK_STAGING=storage_write`` (protobuf rows) or ``storage_write_arrow``
   (Arrow record batches) the rows go instead through one PENDING Storage Write stream,
   committed before the MERGE (:mod:`phaseflow.sinks.storage_write_staging`).
2. One ``MERGE`` from this flush's staged rows (``WHERE flush_id = @flush_id``) into
   ``player_prop_predictions``; see :mod:`phaseflow.sinks.merge_sql`. A MERGE BigQuery refuses (400)
   is retried with the batch; once it has been refused ``isolate_after_rejections`` times, the
   sink bisects the flush (MERGEs of halves, by ``staged_seq``) down to the rows that cannot be
   merged, dead-letters those and merges the rest, so one bad row cannot block every later
   batch. It first checks that a MERGE of no rows goes through: if even that is refused, the
   statement or the tables are at fault, not the rows, and nothing is dead-lettered.
   Rows carry their ``batch_id``; the view ``player_prop_predictions_latest`` (created with the
   tables) keeps, per date, only the latest batch's rows, so lines or players a rerun no longer
   predicts drop out of it (see :func:`phaseflow.sinks.merge_sql.latest_view_sql`).
3. Staged rows are deleted later, in a periodic cleanup of rows older than
   ``staging_retention_seconds`` (real BigQuery refuses DML on rows still in the streaming buffer,
   about 30 minutes, so deleting right after the MERGE would fail there).

A failed flush keeps its batch (same flush id; chunks already staged are not sent again) and the
next flush resumes it. Every call goes through
:class:`~phaseflow.streams.core.bigquery_clients.BigQueryCalls`: each attempt in a thread with an
HTTP timeout, ``retry=None`` and ``job_retry=None`` to the client, inside a throttle on requests per
second; transient errors retried by the one policy until ``PHASEFLOW_BIGQUERY_RETRY_SECONDS``. A
missing IAM permission (403) fails the flush with one line naming the permission and the table;
the rows stay buffered and their offsets uncommitted (docs/bigquery.md).

One module, longer than most, on purpose: staging, MERGE (with its bisection) and cleanup are the
steps of one protocol that share the flush's resumable state (``batch.state``) and the one
retrying ``_call``; apart, each would need both passed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from asyncio_throttle.throttler import Throttler
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from phaseflow.models.events import Prediction
from phaseflow.sinks.base import Batch, BufferedSink, Entry, SinkMetrics
from phaseflow.sinks.bigquery_tables import ensure_tables, setup_operation
from phaseflow.sinks.merge_sql import (
    LATEST_VIEW,
    PREDICTION_SCHEMA,
    STAGING_SCHEMA,
    STAGING_TABLE,
    TARGET_TABLE,
    check_partitions,
    cleanup_sql,
    latest_view_sql,
    merge_sql,
)
from phaseflow.sinks.storage_write_staging import StorageWriteStaging
from phaseflow.streams.core.bigquery_clients import (
    TRANSIENT_REASONS,
    BigQueryCalls,
    RetryPolicy,
    TransientError,
    make_bigquery_client,
    make_write_client,
)
from phaseflow.streams.core.bigquery_errors import describe_bigquery_error
from phaseflow.streams.core.bigquery_permissions import Operation
from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
DeadLetterFn = Callable[[Prediction, str], Awaitable[None]]

#: BigQuery's recommended maximum rows per insertAll request.
MAX_ROWS_PER_INSERT: Final = 500
_INSERTED: Final = "inserted_chunks"
_DEAD: Final = "dead_lettered"
_REJECTIONS: Final = "merge_rejections"
_MERGED_RANGES: Final = "merged_ranges"


def prediction_row(
    prediction: Prediction, *, flush_id: str, seq: int, staged_at: datetime
) -> dict[str, Any]:
    """The staging row of one prediction. NUMERIC goes as a string so it stays exact."""
    line = prediction.current_points_line
    return {
        "prediction_id": prediction.prediction_id,
        "game_date": prediction.game_date.isoformat(),
        "game_id": prediction.game_id,
        "player_lookup": prediction.player_lookup,
        "system_id": prediction.system_id,
        "line_key": prediction.line_key,
        "current_points_line": None if line is None else format(line, "f"),
        "predicted_points": prediction.predicted_points,
        "confidence_score": prediction.confidence_score,
        "recommendation": prediction.recommendation,
        "model_version": prediction.model_version,
        "batch_id": prediction.batch_id,
        "created_at": prediction.created_at.isoformat(),
        "flush_id": flush_id,
        "staged_seq": seq,
        "staged_at": staged_at.isoformat(),
    }


def prediction_columns(
    predictions: Sequence[Prediction], *, flush_id: str, seqs: Sequence[int], staged_at: datetime
) -> dict[str, list[Any]]:
    """:func:`prediction_row`'s columns for many predictions at once, as Python values (date,
    datetime, Decimal) rather than text: Arrow rows convert whole columns, so staging them skips
    a dict and three ISO strings per row (tests/unit/test_storage_write_arrow.py holds the two
    to the same rows)."""
    count = len(predictions)
    return {
        "prediction_id": [p.prediction_id for p in predictions],
        "game_date": [p.game_date for p in predictions],
        "game_id": [p.game_id for p in predictions],
        "player_lookup": [p.player_lookup for p in predictions],
        "system_id": [p.system_id for p in predictions],
        "line_key": [p.line_key for p in predictions],
        "current_points_line": [p.current_points_line for p in predictions],
        "predicted_points": [p.predicted_points for p in predictions],
        "confidence_score": [p.confidence_score for p in predictions],
        "recommendation": [p.recommendation for p in predictions],
        "model_version": [p.model_version for p in predictions],
        "batch_id": [p.batch_id for p in predictions],
        "created_at": [p.created_at for p in predictions],
        "flush_id": [flush_id] * count,
        "staged_seq": list(seqs),
        "staged_at": [staged_at] * count,
    }


class PredictionSink(BufferedSink[Prediction]):
    """Buffers predictions and writes them to BigQuery with staging + MERGE."""

    def __init__(
        self,
        settings: Settings,
        *,
        dead_letter: DeadLetterFn,
        client: bigquery.Client | None = None,
        metrics: SinkMetrics | None = None,
        retry_policy: RetryPolicy | None = None,
        table: str = TARGET_TABLE,
        staging_table: str = STAGING_TABLE,
        latest_view: str = LATEST_VIEW,
        staging_retention_seconds: float = 3600.0,
        cleanup_every_seconds: float = 600.0,
        batch_rows: int | None = None,
        flush_seconds: float | None = None,
        max_buffer_rows: int | None = None,
        max_batch_rows: int | None = None,
        failure_backoff_seconds: float = 1.0,
        isolate_after_rejections: int = 3,
        parallel_inserts: int = 4,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        staging: Literal["insert_all", "storage_write", "storage_write_arrow"] | None = None,
        write_client: BigQueryWriteClient | None = None,
    ) -> None:
        super().__init__(
            batch_rows=batch_rows or settings.sink_batch_rows,
            flush_seconds=settings.sink_flush_seconds if flush_seconds is None else flush_seconds,
            max_buffer_rows=max_buffer_rows or settings.sink_max_buffer_rows,
            # Behind, one staging + MERGE of everything buffered: most of a MERGE's cost is per
            # statement (job latency on BigQuery; on the emulator ~0.1 s for 2,500 rows and
            # ~0.25 s for 11,250), so a backlog drains in one instead of many.
            max_batch_rows=max_batch_rows or max_buffer_rows or settings.sink_max_buffer_rows,
            failure_backoff_seconds=failure_backoff_seconds,
            metrics=metrics,
        )
        self.settings = settings
        self._dead_letter = dead_letter
        self._own_client = client is None
        self._client = client or make_bigquery_client(settings)
        self._timeout = settings.bigquery_timeout_seconds
        self._throttler = Throttler(rate_limit=settings.bigquery_requests_per_second, period=1.0)
        self._calls = BigQueryCalls(
            retry_policy or RetryPolicy.from_settings(settings),
            timeout_seconds=self._timeout,
            on_retry=self._retrying,
            throttle=lambda: self._throttler,
        )
        dataset = f"{self._client.project}.{settings.bigquery_dataset}"
        self.table_id = f"{dataset}.{table}"
        self.staging_id = f"{dataset}.{staging_table}"
        self.latest_view_id = f"{dataset}.{latest_view}"
        self._merge_sql = merge_sql(self.table_id, self.staging_id)
        self._latest_view_sql = latest_view_sql(self.table_id)
        # BigQuery rejects PARTITION BY over FLOAT64 and the emulator would not notice: check here.
        check_partitions(self._merge_sql, STAGING_SCHEMA)
        check_partitions(self._latest_view_sql, PREDICTION_SCHEMA)
        self._cleanup_sql = cleanup_sql(self.staging_id)
        self._staging_retention = timedelta(seconds=staging_retention_seconds)
        self._cleanup_every = cleanup_every_seconds
        self._last_cleanup = time.monotonic()
        self._wall_clock = wall_clock
        self._isolate_after = isolate_after_rejections
        self._insert_slots = asyncio.Semaphore(parallel_inserts)
        self.last_merge_affected_rows: int | None = None
        #: How flushes are staged (``PHASEFLOW_SINK_STAGING`` unless given).
        self.staging = staging or settings.sink_staging
        self._storage_write: StorageWriteStaging | None = None
        self._own_write_client = write_client is None
        if self.staging != "insert_all":
            self._storage_write = StorageWriteStaging(
                write_client or make_write_client(settings),
                self.staging_id,
                STAGING_SCHEMA,
                call=self._call,
                timeout_seconds=self._timeout,
                row_format="arrow" if self.staging == "storage_write_arrow" else "proto",
            )
        self._setup_op = setup_operation(settings, dataset)
        self._insert_op = Operation(
            "the streaming insert into staging", self.staging_id, "bigquery.tables.updateData"
        )
        self._merge_op = Operation("the MERGE from staging", self.table_id, "bigquery.jobs.create")
        self._cleanup_op = Operation(
            "the staging cleanup (DELETE)", self.staging_id, "bigquery.jobs.create"
        )

    @property
    def storage_write(self) -> StorageWriteStaging | None:
        """The Storage Write staging (None when staging with insertAll)."""
        return self._storage_write

    # --- BigQuery calls -----------------------------------------------------------------

    def _retrying(self, exc: Exception) -> None:
        self.note_retry(exc)
        log.info("BigQuery call failed (%s); retrying", exc)

    async def _call(self, operation: Operation, fn: Callable[[], T]) -> T:
        """``fn`` under the policy; a table gone missing is created again (when allowed)."""
        recreate = self._create_tables if self.settings.bigquery_create_tables else None
        return await self._calls.call(operation, fn, on_missing=recreate)

    def _tables(self) -> list[bigquery.Table]:
        target = bigquery.Table(self.table_id, list(PREDICTION_SCHEMA))
        target.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field="game_date"
        )
        target.clustering_fields = ["player_lookup", "system_id"]
        staging = bigquery.Table(self.staging_id, list(STAGING_SCHEMA))
        staging.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY,
            field="staged_at",
            expiration_ms=2 * 24 * 3600 * 1000,  # a backstop if cleanup never runs
        )
        staging.clustering_fields = ["flush_id"]
        latest = bigquery.Table(self.latest_view_id)
        latest.view_query = self._latest_view_sql
        return [target, staging, latest]

    def _ensure_tables_sync(self) -> None:
        ensure_tables(
            self._client, self.settings, self._tables(), timeout=self._timeout, retry=None
        )

    async def _create_tables(self) -> None:
        log.warning("a table of %s is missing; creating the tables again", self.table_id)
        await self._calls.attempt(self._setup_op, self._ensure_tables_sync)

    def describe_error(self, exc: BaseException) -> str:
        return describe_bigquery_error(exc, self.settings.bigquery_endpoint)

    async def setup(self) -> None:
        """Create the dataset, the target and the staging table and the latest-batch view when
        missing (only check them with ``PHASEFLOW_BIGQUERY_CREATE_TABLES=false``). Staging Arrow
        rows, also append one row to a stream that is never committed: a project that does not
        take Arrow rows fails here, with one line naming the setting to switch."""
        await self._calls.call(self._setup_op, self._ensure_tables_sync)
        if self._storage_write is not None and self._storage_write.row_format == "arrow":
            await self._storage_write.probe(self._probe_row())

    def _probe_row(self) -> dict[str, Any]:
        """A staging row like any flush's, for :meth:`StorageWriteStaging.probe` (never
        committed, so it never appears in staging)."""
        now = self._wall_clock()
        probe = Prediction(
            prediction_id="probe",
            game_date=now.date(),
            game_id="probe",
            player_lookup="probe",
            system_id="probe",
            current_points_line=None,
            predicted_points=0.0,
            confidence_score=0.0,
            recommendation="NO_LINE",
            model_version="probe",
            batch_id="probe",
            created_at=now,
        )
        return prediction_row(probe, flush_id="probe", seq=0, staged_at=now)

    def _query(self, sql: str, params: Sequence[Any]) -> int | None:
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        # jobs.query: one round trip when the statement finishes within the request (it polls
        # otherwise), where query() + result() take three.
        rows = self._client.query_and_wait(
            sql,
            job_config=config,
            api_timeout=self._timeout,
            wait_timeout=self._timeout,
            retry=None,  # type: ignore[arg-type] # retried by the policy; the library accepts None
            job_retry=None,  # type: ignore[arg-type]
        )
        affected: int | None = rows.num_dml_affected_rows
        return affected

    # --- one batch ----------------------------------------------------------------------

    async def write_batch(self, batch: Batch[Prediction]) -> None:
        dead: dict[int, str] = batch.state.setdefault(_DEAD, {})
        staged_at = self._wall_clock()
        if self._storage_write is not None:
            entries = [e for e in batch.entries if e.seq not in dead]
            if self._storage_write.row_format == "arrow":
                columns = prediction_columns(
                    [e.row for e in entries],
                    flush_id=batch.batch_id,
                    seqs=[e.seq for e in entries],
                    staged_at=staged_at,
                )
                refused = await self._storage_write.stage_columns(
                    batch.state, [e.seq for e in entries], columns
                )
            else:
                rows = [
                    (
                        e.seq,
                        prediction_row(
                            e.row, flush_id=batch.batch_id, seq=e.seq, staged_at=staged_at
                        ),
                    )
                    for e in entries
                ]
                refused = await self._storage_write.stage(batch.state, rows)
            dead.update(refused)
        else:
            await self._stage_insert_all(batch, staged_at)
        await self._deliver_dead_letters(batch)
        if batch.state.get(_REJECTIONS, 0) < self._isolate_after:
            try:
                self.last_merge_affected_rows = await self._merge(
                    batch.batch_id, batch.entries[0].seq, batch.last_seq
                )
            except gexc.BadRequest:
                batch.state[_REJECTIONS] = batch.state.get(_REJECTIONS, 0) + 1
                raise
        else:
            await self._merge_isolating(batch)
            await self._deliver_dead_letters(batch)
        await self._maybe_cleanup()

    async def _stage_insert_all(self, batch: Batch[Prediction], staged_at: datetime) -> None:
        """insertAll the batch in chunks; chunks staged by an earlier attempt are skipped."""
        inserted: set[int] = batch.state.setdefault(_INSERTED, set())
        dead: dict[int, str] = batch.state[_DEAD]
        chunks = [
            batch.entries[i : i + MAX_ROWS_PER_INSERT]
            for i in range(0, len(batch.entries), MAX_ROWS_PER_INSERT)
        ]

        async def stage(number: int, chunk: Sequence[Entry[Prediction]]) -> None:
            async with self._insert_slots:
                rejected = await self._insert_chunk(batch.batch_id, chunk, staged_at)
            dead.update(rejected)
            inserted.add(number)

        # Chunks are independent (the MERGE orders rows by staged_seq), so up to
        # ``parallel_inserts`` go at once, still bounded by the throttle: one is serialized while
        # another is written. All at once was slower on the emulator (11,250 rows: 1 at a time
        # 1.43 s, 2 or 4 1.06 s, 23 1.19 s). A chunk that failed is sent again on the next attempt.
        results = await asyncio.gather(
            *(stage(n, chunk) for n, chunk in enumerate(chunks) if n not in inserted),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _merge(self, flush_id: str, first_seq: int, last_seq: int) -> int | None:
        """MERGE the rows of flush ``flush_id`` staged with ``first_seq <= seq <= last_seq``."""
        params = [
            bigquery.ScalarQueryParameter("flush_id", "STRING", flush_id),
            bigquery.ScalarQueryParameter("first_seq", "INT64", first_seq),
            bigquery.ScalarQueryParameter("last_seq", "INT64", last_seq),
        ]
        return await self._call(self._merge_op, lambda: self._query(self._merge_sql, params))

    async def _merge_isolating(self, batch: Batch[Prediction]) -> None:
        """MERGE ``batch`` in parts, halving the parts BigQuery refuses, and mark each single
        row it still refuses as dead. Resumable: parts merged before a transient failure are
        recorded in the batch and skipped when it is retried."""
        dead: dict[int, str] = batch.state[_DEAD]
        # If a MERGE of no rows (an empty seq range) is refused too, the statement or the tables
        # are at fault, not the rows: this raises and nothing is dead-lettered.
        await self._merge(batch.batch_id, 1, 0)
        merged: set[tuple[int, int]] = batch.state.setdefault(_MERGED_RANGES, set())
        staged = [entry.seq for entry in batch.entries if entry.seq not in dead]
        affected = 0
        # Depth first, left to right: parts are merged in staging order, so between rows of
        # one flush with the same created_at the one staged first still wins.
        parts = [staged] if staged else []
        while parts:
            seqs = parts.pop()
            span = (seqs[0], seqs[-1])
            if span in merged:
                continue
            try:
                affected += await self._merge(batch.batch_id, *span) or 0
            except gexc.BadRequest as exc:
                if len(seqs) > 1:
                    middle = len(seqs) // 2
                    parts += [seqs[middle:], seqs[:middle]]
                    continue
                dead[seqs[0]] = f"BigQuery refused to merge the row: {exc.message}"
                log.warning("row %d of flush %s cannot be merged: %s", seqs[0], batch.batch_id, exc)
            merged.add(span)
        self.last_merge_affected_rows = affected

    async def _insert_chunk(
        self, flush_id: str, chunk: Sequence[Entry[Prediction]], staged_at: datetime
    ) -> dict[int, str]:
        """Stage ``chunk``; return ``{seq: reason}`` of rows BigQuery rejected for good."""
        rows = [
            prediction_row(entry.row, flush_id=flush_id, seq=entry.seq, staged_at=staged_at)
            for entry in chunk
        ]
        row_ids = [f"{flush_id}:{entry.seq}" for entry in chunk]

        def insert() -> dict[int, str]:
            # Fast path: the rows are validated Predictions, so a plain insert nearly always
            # succeeds, and it is ~4x faster on the emulator than with skip_invalid_rows. Any
            # failure (an error, rejected rows) falls through to the careful path below, which
            # is idempotent for rows that did land (same row ids).
            try:
                if not self._client.insert_rows_json(
                    self.staging_id,
                    rows,
                    row_ids=row_ids,
                    # None: fail at once and take the careful path (the library accepts None
                    # although its annotation says Retry).
                    retry=None,  # type: ignore[arg-type]
                    timeout=self._timeout,
                ):
                    return {}
            except (gexc.GoogleAPIError, OSError) as fast_error:
                log.debug(
                    "fast insert of %d rows failed (%s); inserting carefully", len(rows), fast_error
                )
            # skip_invalid_rows: valid rows are written and only the bad ones come back
            # ("invalid"). Without it the emulator answers 500 for the whole request (it would
            # look transient and wedge the batch), though it is ~4x faster. Should a server still
            # answer "stopped" (rows not written because of another row), those rows are sent
            # again without the rejected ones; any other transient reason retries the chunk.
            pending = list(range(len(chunk)))
            rejected: dict[int, str] = {}
            while pending:
                errors = self._client.insert_rows_json(
                    self.staging_id,
                    [rows[i] for i in pending],
                    row_ids=[row_ids[i] for i in pending],
                    skip_invalid_rows=True,
                    retry=None,  # type: ignore[arg-type] # retried by the policy
                    timeout=self._timeout,
                )
                if not errors:
                    break
                again: list[int] = []
                for error in errors:
                    index = pending[int(error["index"])]
                    details = error.get("errors") or [{}]
                    reasons = {str(d.get("reason", "")) for d in details}
                    if reasons <= {"stopped"}:
                        again.append(index)
                    elif reasons & TRANSIENT_REASONS:
                        raise TransientError(f"row {index} not written: {details}")
                    else:
                        message = "; ".join(
                            f"{d.get('reason', '?')}: {d.get('message', '')}".strip()
                            for d in details
                        )
                        rejected[chunk[index].seq] = f"BigQuery rejected the row: {message}"
                if len(again) == len(pending):  # no row set aside: no progress possible
                    raise TransientError(f"{len(again)} rows stopped without an invalid row")
                pending = sorted(again)
            return rejected

        return await self._call(self._insert_op, insert)

    async def _deliver_dead_letters(self, batch: Batch[Prediction]) -> None:
        dead: dict[int, str] = batch.state[_DEAD]
        delivered: set[int] = batch.state.setdefault("dead_delivered", set())
        for entry in batch.entries:
            reason = dead.get(entry.seq)
            if reason is None or entry.seq in delivered:
                continue
            await self._dead_letter(entry.row, reason)
            delivered.add(entry.seq)
            self.metrics.record_dead_letter(reason)

    async def _maybe_cleanup(self) -> None:
        if time.monotonic() - self._last_cleanup < self._cleanup_every:
            return
        self._last_cleanup = time.monotonic()
        await self.cleanup_staging(merged=True)

    async def cleanup_staging(self, *, merged: bool = False) -> int | None:
        """Delete staged rows older than the retention, never those of a flush not yet merged
        (``merged``: the current batch has just been merged); best effort."""
        batch = self._batch
        pending = [batch.batch_id] if batch is not None and not merged else []
        cutoff = self._wall_clock() - self._staging_retention
        params = [
            bigquery.ScalarQueryParameter("cutoff", "TIMESTAMP", cutoff),
            bigquery.ArrayQueryParameter("pending", "STRING", pending),
        ]
        try:
            return await self._call(
                self._cleanup_op, lambda: self._query(self._cleanup_sql, params)
            )
        except Exception as exc:  # noqa: BLE001 -- cleanup must never fail a flush
            log.warning("staging cleanup failed (will run again later): %s", exc)
            return None

    async def close(self) -> None:
        if self._own_client:
            self._client.close()  # type: ignore[no-untyped-call]
        if self._storage_write is not None and self._own_write_client:
            self._storage_write.close()
