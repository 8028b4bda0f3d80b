"""Staging a flush through the BigQuery Storage Write API: one PENDING stream per flush.

A PENDING stream's rows become visible only when the stream is finalized and committed, all at
once, so a flush is staged exactly once whatever fails:

1. ``CreateWriteStream`` (PENDING) on the staging table; its name is kept in the flush's
   resumable state (``Batch.state``).
2. ``AppendRows``: every row, in requests with explicit offsets. A request appended before (a
   retried call on the same stream) answers ALREADY_EXISTS and is not appended twice.
3. ``FinalizeWriteStream``, then ``BatchCommitWriteStreams``: the rows appear in staging.

A retried flush first asks to commit the stream of its previous attempt: if that stream was
committed already (the answer to the commit was lost) or is finalized and commits now, staging is
done and only the MERGE runs again. Otherwise (failed while appending, or gone) that stream is
left uncommitted, and BigQuery discards it, and the rows go into a new stream. Rows BigQuery
refuses (``row_errors``) or that a column cannot hold (checked before sending) are returned for
dead letters; the others go into a new stream, since a refused request appends nothing.

Rows go as protobuf messages (:class:`~phaseflow.sinks.storage_write_rows.ProtoRows`) or as Arrow
RecordBatches (:class:`~phaseflow.sinks.storage_write_arrow.ArrowRows`); everything above is the
same for both. Should BigQuery refuse Arrow rows for a project, the refusal is one line naming the
setting to switch (:class:`RowFormatRefusedError`), and :meth:`StorageWriteStaging.probe` lets the
sink find that out at setup.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types

from phaseflow.sinks.storage_write_arrow import ArrowRows
from phaseflow.sinks.storage_write_rows import (
    BYTES_PER_REQUEST,
    ROWS_PER_REQUEST,
    ProtoRows,
)
from phaseflow.streams.core.bigquery_clients import TransientError
from phaseflow.streams.core.bigquery_permissions import Operation
from phaseflow.streams.core.settings import env_var

T = TypeVar("T")
Call = Callable[[Operation, Callable[[], T]], Awaitable[T]]

__all__ = ["BYTES_PER_REQUEST", "ROWS_PER_REQUEST", "RowFormatRefusedError", "StorageWriteStaging"]
RowFormatName = Literal["proto", "arrow"]
_STREAM: Final = "write_stream"
_COMMITTED: Final = "write_stream_committed"
_StorageCode = types.StorageError.StorageErrorCode
#: The emulator answers a commit of a committed stream with INVALID_STREAM_STATE and this text
#: (Google answers STREAM_ALREADY_COMMITTED).
_COMMITTED_STATE: Final = re.compile(r"state=COMMITTED\b", re.IGNORECASE)
#: How BigQuery would say it does not take Arrow rows from this project: a request (or the
#: call) refused as a whole, no row_errors, although every value was checked before sending.
_REFUSAL_ERRORS: Final = (gexc.InvalidArgument, gexc.MethodNotImplemented)


class RowFormat(Protocol):
    """How rows travel in AppendRows requests (:class:`ProtoRows`, :class:`ArrowRows`)."""

    @property
    def name(self) -> str: ...

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> tuple[Any, dict[int, str]]:
        """The rows BigQuery can take, in the format, in order; ``{index: reason}`` of the
        others (a value their column cannot hold)."""

    def select(self, encoded: Any, keep: Sequence[int]) -> Any:
        """The encoded rows at ``keep``, in that order."""

    def requests(self, encoded: Any) -> list[tuple[int, types.AppendRowsRequest]]:
        """The requests carrying the encoded rows, each with the index of its first row."""


class RowFormatRefusedError(RuntimeError):
    """BigQuery refused a whole AppendRows request of rows checked before sending: most likely
    the row format itself (Arrow is not taken from every project). One line, naming the
    setting that switches the format."""


def _grpc_error(code: int, message: str) -> gexc.GoogleAPICallError:
    """The google.api_core exception of a status carried in a response (so the one retry
    policy and the 403 handling see it like any failed call)."""
    status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
    error: gexc.GoogleAPICallError = gexc.from_grpc_status(status, message)  # type: ignore[no-untyped-call]
    return error


class StorageWriteStaging:
    """Stages rows of ``schema`` into ``table_id`` (``project.dataset.table``) through ``client``;
    every call goes through ``call`` (the sink's retrying, bounded, throttled call)."""

    def __init__(
        self,
        client: BigQueryWriteClient,
        table_id: str,
        schema: Sequence[bigquery.SchemaField],
        *,
        call: Call[Any],
        timeout_seconds: float,
        row_format: RowFormatName = "proto",
    ) -> None:
        project, dataset, table = table_id.split(".")
        self.parent = f"projects/{project}/datasets/{dataset}/tables/{table}"
        self.table_id = table_id
        self._client = client
        self.row_format = row_format
        self._format: RowFormat = ArrowRows(schema) if row_format == "arrow" else ProtoRows(schema)
        self._call = call
        self._timeout = timeout_seconds
        self._operation = Operation(
            "the Storage Write staging", table_id, "bigquery.tables.updateData"
        )
        #: Streams created (a test's and the bench's view of how often a flush was staged).
        self.streams_created = 0

    async def stage(
        self, state: dict[str, Any], rows: Sequence[tuple[int, Mapping[str, Any]]]
    ) -> dict[int, str]:
        """Stage ``rows`` (``(seq, row)``) once; return ``{seq: reason}`` of rows refused.
        ``state`` is the flush's: a retry of the same flush resumes from it."""
        if state.get(_COMMITTED):
            return {}
        seqs = [seq for seq, _ in rows]
        return await self._stage(state, seqs, *self._format.encode([row for _, row in rows]))

    async def stage_columns(
        self, state: dict[str, Any], seqs: Sequence[int], columns: Mapping[str, Sequence[Any]]
    ) -> dict[int, str]:
        """:meth:`stage` for Arrow rows given a column at a time (Python values: date, aware
        datetime, Decimal...), which skips building and parsing a dict per row."""
        if state.get(_COMMITTED):
            return {}
        if not isinstance(self._format, ArrowRows):
            raise TypeError(f"{self._format.name} rows are staged row by row (stage())")
        return await self._stage(state, seqs, *self._format.encode_columns(columns, len(seqs)))

    async def _stage(
        self, state: dict[str, Any], seqs: Sequence[int], encoded: Any, bad: dict[int, str]
    ) -> dict[int, str]:
        """Stage the ``encoded`` rows (sequence numbers ``seqs`` less those refused in
        ``bad``, by index) into one stream, or finish what an earlier attempt began."""
        refused = {
            seqs[i]: f"BigQuery rejected the row (checked before staging): {reason}"
            for i, reason in bad.items()
        }
        staged = [seq for i, seq in enumerate(seqs) if i not in bad]
        previous = state.get(_STREAM)
        if previous is not None and await self._commit(previous):
            state[_COMMITTED] = True
            return refused
        while staged:
            stream = await self._create()
            state[_STREAM] = stream
            bad = await self._append(stream, encoded)
            if bad:  # nothing of a refused request was appended: again, without those rows
                refused.update({staged[i]: reason for i, reason in bad.items()})
                keep = [i for i in range(len(staged)) if i not in bad]
                staged = [staged[i] for i in keep]
                encoded = self._format.select(encoded, keep)
                continue
            await self._finalize(stream)
            if not await self._commit(stream):
                raise TransientError(f"write stream {stream} could not be committed")
            break
        state[_COMMITTED] = True
        return refused

    async def _create(self, *, count: bool = True) -> str:
        def create() -> str:
            stream = self._client.create_write_stream(
                parent=self.parent,
                write_stream=types.WriteStream(type_=types.WriteStream.Type.PENDING),
                retry=None,
                timeout=self._timeout,
            )
            return str(stream.name)

        name: str = await self._call(self._operation, create)
        if count:  # a probe's stream stages nothing
            self.streams_created += 1
        return name

    async def probe(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` to a PENDING stream that is never committed (so it never appears):
        a project that does not take this row format fails here, at setup, with one line
        (:class:`RowFormatRefusedError`), not at the first flush."""
        encoded, refused = self._format.encode([row])
        if not refused:
            stream = await self._create(count=False)
            refused = await self._append(stream, encoded)
        if refused:
            raise RowFormatRefusedError(
                f"the Storage Write probe row was refused on {self.table_id}: "
                + "; ".join(refused.values())
            )

    def _refused(self, stream: str, exc: gexc.GoogleAPICallError) -> RowFormatRefusedError:
        message = " ".join(str(exc.message).split())  # one line
        return RowFormatRefusedError(
            f"BigQuery refused the {self._format.name} rows appended to {stream} "
            f"({type(exc).__name__}: {message}); if this project does not take Arrow rows, set "
            f"{env_var('sink_staging')}=storage_write (protobuf rows) or insert_all"
        )

    async def _append(self, stream: str, encoded: Any) -> dict[int, str]:
        """Append the ``encoded`` rows; ``{row index: reason}`` of rows BigQuery refused (then
        the stream must not be committed: a refused request appended nothing)."""
        requests: list[types.AppendRowsRequest] = []
        starts: list[int] = []
        for start, request in self._format.requests(encoded):
            request.write_stream = stream
            request.offset = start
            requests.append(request)
            starts.append(start)

        def append() -> dict[int, str]:
            refused: dict[int, str] = {}
            answered = 0
            try:
                responses: Iterable[types.AppendRowsResponse] = self._client.append_rows(
                    iter(requests),
                    retry=None,
                    timeout=self._timeout,
                    # Routes the bidirectional call to the stream's server (required by Google).
                    metadata=(("x-goog-request-params", f"write_stream={stream}"),),
                )
                for start, response in zip(starts, responses, strict=False):
                    answered += 1
                    if response.row_errors:
                        for error in response.row_errors:
                            refused[start + error.index] = (
                                f"BigQuery rejected the row: {error.message}"
                            )
                    elif response.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]:
                        continue  # appended by an earlier try of this call, at this offset
                    elif response.error.code:
                        raise _grpc_error(response.error.code, response.error.message)
            except _REFUSAL_ERRORS as exc:
                if self.row_format != "arrow":
                    raise
                raise self._refused(stream, exc) from exc
            if answered != len(requests):
                raise TransientError(
                    f"AppendRows answered {answered} of {len(requests)} requests on {stream}"
                )
            return refused

        result: dict[int, str] = await self._call(self._operation, append)
        return result

    async def _finalize(self, stream: str) -> None:
        def finalize() -> None:
            self._client.finalize_write_stream(name=stream, retry=None, timeout=self._timeout)

        await self._call(self._operation, finalize)

    async def _commit(self, stream: str) -> bool:
        """Commit ``stream``: True once it is committed (now or before), False if it cannot be
        (not finalized, gone): its rows are then never visible."""
        request = types.BatchCommitWriteStreamsRequest(parent=self.parent, write_streams=[stream])

        def commit() -> bool:
            response = self._client.batch_commit_write_streams(
                request=request, retry=None, timeout=self._timeout
            )
            if not response.stream_errors:
                return True
            error = response.stream_errors[0]
            if error.code == _StorageCode.STREAM_ALREADY_COMMITTED:
                return True
            return error.code == _StorageCode.INVALID_STREAM_STATE and bool(
                _COMMITTED_STATE.search(error.error_message)
            )

        committed: bool = await self._call(self._operation, commit)
        return committed

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]
