"""Storage Write staging against a client double: how answers BigQuery gives (and the emulator
cannot, such as a 403 or row_errors) are handled."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import grpc
import pyarrow as pa
import pytest
from google.api_core import exceptions as gexc
from google.cloud.bigquery_storage_v1 import types
from google.rpc import status_pb2

from phaseflow.models.events import Prediction
from phaseflow.sinks.base import SinkFlushError
from phaseflow.sinks.bigquery_predictions import PredictionSink, prediction_row
from phaseflow.sinks.merge_sql import STAGING_SCHEMA
from phaseflow.sinks.storage_write_staging import (
    RowFormatName,
    RowFormatRefusedError,
    StorageWriteStaging,
)
from phaseflow.streams.core.bigquery_clients import BigQueryCalls, RetryPolicy
from phaseflow.streams.core.bigquery_permissions import BigQueryPermissionError
from phaseflow.streams.core.settings import Settings
from tests.fixtures.bigquery_double import ClientDouble

SETTINGS = Settings(bigquery_project="proj", bigquery_dataset="ds", topic_prefix="t")
TABLE = "proj.ds.player_prop_predictions_staging"
Code = types.StorageError.StorageErrorCode


def rows_as_predictions(count: int) -> list[Prediction]:
    return [
        Prediction(
            prediction_id=f"p{seq}",
            game_date=date(2026, 1, 15),
            game_id="G1",
            player_lookup=f"player{seq}",
            system_id="xgb",
            current_points_line=Decimal("20.5"),
            predicted_points=21.0,
            confidence_score=60.0,
            recommendation="OVER",
            model_version="v1",
            batch_id="b1",
            created_at=datetime(2026, 1, 15, 17, tzinfo=UTC),
        )
        for seq in range(1, count + 1)
    ]


def rows(count: int) -> list[tuple[int, dict[str, Any]]]:
    staged_at = datetime(2026, 1, 15, 18, tzinfo=UTC)
    return [
        (seq, prediction_row(prediction, flush_id="f", seq=seq, staged_at=staged_at))
        for seq, prediction in enumerate(rows_as_predictions(count), start=1)
    ]


class WriteClientDouble:
    """Answers like BigQuery's Storage Write API; records what it was asked."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.appended: dict[str, int] = {}
        self.committed: set[str] = set()
        self.deny = False
        self.row_errors: list[int] = []  # indexes refused in the first request, once
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: How a project that does not take Arrow rows might answer them: "response" (an
        #: error in the AppendRows response) or "call" (the whole call fails).
        self.refuse_arrow: str | None = None

    def create_write_stream(self, **kwargs: Any) -> types.WriteStream:
        self.calls.append(("create_write_stream", kwargs))
        if self.deny:
            raise gexc.PermissionDenied(  # type: ignore[no-untyped-call]
                "Permission 'TABLES_UPDATE_DATA' denied on resource (or it may not exist)."
            )
        name = f"projects/proj/datasets/ds/tables/t/streams/{len(self.created):016x}"
        self.created.append(name)
        return types.WriteStream(name=name)

    def append_rows(
        self, requests: Iterator[types.AppendRowsRequest], **kwargs: Any
    ) -> list[types.AppendRowsResponse]:
        self.calls.append(("append_rows", kwargs))
        answers = []
        arrow_schema = b""
        for request in requests:
            arrow = "arrow_rows" in request
            if arrow and self.refuse_arrow == "call":
                raise gexc.InvalidArgument("Arrow input is not enabled\nfor this project")  # type: ignore[no-untyped-call]
            if arrow and self.refuse_arrow == "response":
                status = status_pb2.Status(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    message="Input format ARROW is not supported for this project",
                )
                answers.append(types.AppendRowsResponse(error=status))
                continue
            if self.row_errors:
                errors = [types.RowError(index=i, message="bad value") for i in self.row_errors]
                self.row_errors = []
                answers.append(types.AppendRowsResponse(row_errors=errors))
                continue
            if arrow:  # the schema comes once per connection, then one RecordBatch per request
                arrow_schema = arrow_schema or bytes(
                    request.arrow_rows.writer_schema.serialized_schema
                )
                batch = bytes(request.arrow_rows.rows.serialized_record_batch)
                count = pa.ipc.open_stream(io.BytesIO(arrow_schema + batch)).read_all().num_rows
            else:
                count = len(request.proto_rows.rows.serialized_rows)
            self.appended[request.write_stream] = self.appended.get(request.write_stream, 0) + count
            answers.append(types.AppendRowsResponse())
        return answers

    def finalize_write_stream(self, **kwargs: Any) -> types.FinalizeWriteStreamResponse:
        self.calls.append(("finalize_write_stream", kwargs))
        return types.FinalizeWriteStreamResponse()

    def batch_commit_write_streams(
        self, request: types.BatchCommitWriteStreamsRequest, **kwargs: Any
    ) -> types.BatchCommitWriteStreamsResponse:
        self.calls.append(("batch_commit_write_streams", kwargs))
        (stream,) = request.write_streams
        if stream in self.committed:
            return types.BatchCommitWriteStreamsResponse(
                stream_errors=[types.StorageError(code=Code.STREAM_ALREADY_COMMITTED)]
            )
        self.committed.add(stream)
        return types.BatchCommitWriteStreamsResponse()


def staging(client: WriteClientDouble, row_format: RowFormatName = "proto") -> StorageWriteStaging:
    calls = BigQueryCalls(
        RetryPolicy(deadline_seconds=0.0, initial_seconds=0.05), timeout_seconds=1.0
    )
    return StorageWriteStaging(
        client,  # type: ignore[arg-type] # a double of the client's four calls
        TABLE,
        STAGING_SCHEMA,
        call=calls.call,
        timeout_seconds=1.0,
        row_format=row_format,
    )


async def test_a_denied_permission_fails_staging_with_one_line_naming_it_and_the_table() -> None:
    client = WriteClientDouble()
    client.deny = True
    with pytest.raises(BigQueryPermissionError) as caught:
        await staging(client).stage({}, rows(3))
    line = str(caught.value)
    assert "\n" not in line
    assert TABLE in line
    assert "bigquery.tables.updateData" in line


@pytest.mark.parametrize("row_format", ["proto", "arrow"])
async def test_rows_bigquery_reports_in_row_errors_are_returned_and_the_rest_staged_once(
    row_format: RowFormatName,
) -> None:
    client = WriteClientDouble()
    client.row_errors = [1]
    refused = await staging(client, row_format).stage({}, rows(3))
    assert list(refused) == [2]  # index 1 of the request is seq 2
    assert "bad value" in refused[2]
    # The refused request appended nothing; the other rows went into a second stream.
    assert len(client.created) == 2
    assert client.committed == {client.created[1]}
    assert client.appended == {client.created[1]: 2}


@pytest.mark.parametrize("row_format", ["proto", "arrow"])
async def test_a_retry_after_the_commit_finds_the_stream_committed_and_creates_none(
    row_format: RowFormatName,
) -> None:
    client = WriteClientDouble()
    stager = staging(client, row_format)
    state: dict[str, Any] = {}
    await stager.stage(state, rows(3))
    state.pop("write_stream_committed")  # as if the commit's answer had been lost
    await stager.stage(state, rows(3))
    assert len(client.created) == 1
    assert client.appended == {client.created[0]: 3}


def sink_on(write_client: WriteClientDouble, staging: str = "storage_write") -> PredictionSink:
    """A prediction sink staging through ``write_client``, its MERGE on a BigQuery double."""
    return PredictionSink(
        SETTINGS,
        dead_letter=_no_dead_letters,
        client=ClientDouble().as_client(),
        write_client=write_client,  # type: ignore[arg-type] # the double of the four calls
        staging=staging,  # type: ignore[arg-type] # one of the Storage Write values
        retry_policy=RetryPolicy(deadline_seconds=5.0, initial_seconds=0.01, maximum_seconds=0.02),
        flush_seconds=60,
    )


async def _no_dead_letters(row: Prediction, reason: str) -> None:
    raise AssertionError(f"unexpected dead letter {row.key}: {reason}")


async def test_a_403_fails_the_sinks_flush_with_one_line_and_keeps_the_rows() -> None:
    write_client = WriteClientDouble()
    write_client.deny = True
    sink = sink_on(write_client)
    sink.add(rows_as_predictions(1)[0])
    with pytest.raises(SinkFlushError, match="attempt 1"):
        await sink.flush()
    assert sink.last_error is not None
    assert sink.last_error.startswith("BigQueryPermissionError: BigQuery denied the Storage Write")
    assert "bigquery.tables.updateData" in sink.last_error
    assert "\n" not in sink.last_error
    assert len(write_client.calls) == 1  # not retried: a 403 does not heal
    assert sink.buffered == 1
    assert sink.durable_seq == 0


@pytest.mark.parametrize("staging_path", ["storage_write", "storage_write_arrow"])
async def test_every_storage_write_call_has_a_timeout_and_no_library_retry(
    staging_path: str,
) -> None:
    write_client = WriteClientDouble()
    sink = sink_on(write_client, staging_path)
    for prediction in rows_as_predictions(3):
        sink.add(prediction)
    await sink.flush()
    assert sink.durable_seq == 3
    assert [name for name, _ in write_client.calls] == [
        "create_write_stream",
        "append_rows",
        "finalize_write_stream",
        "batch_commit_write_streams",
    ]
    for name, kwargs in write_client.calls:
        assert kwargs.get("retry", "missing") is None, name
        assert kwargs["timeout"] == SETTINGS.bigquery_timeout_seconds, name


@pytest.mark.parametrize("refusal", ["response", "call"])
async def test_a_project_refusing_arrow_rows_fails_the_sinks_setup_with_one_line_naming_the_setting(
    refusal: str,
) -> None:
    write_client = WriteClientDouble()
    write_client.refuse_arrow = refusal
    sink = sink_on(write_client, "storage_write_arrow")
    with pytest.raises(RowFormatRefusedError) as caught:
        await sink.setup()
    line = str(caught.value)
    assert "\n" not in line
    assert "PHASEFLOW_SINK_STAGING=storage_write (protobuf rows) or insert_all" in line
    assert "Arrow" in line
    # Refused at once (not retried: it does not heal) and nothing committed.
    assert [name for name, _ in write_client.calls] == ["create_write_stream", "append_rows"]
    assert write_client.committed == set()


async def test_the_setup_probe_appends_one_row_to_a_stream_it_never_commits() -> None:
    write_client = WriteClientDouble()
    sink = sink_on(write_client, "storage_write_arrow")
    await sink.setup()
    assert write_client.appended == {write_client.created[0]: 1}
    assert write_client.committed == set()
    assert [name for name, _ in write_client.calls] == ["create_write_stream", "append_rows"]
    staging_ = sink.storage_write
    assert staging_ is not None
    assert staging_.streams_created == 0  # the probe stages nothing


async def test_protobuf_staging_does_not_probe_at_setup() -> None:
    write_client = WriteClientDouble()
    sink = sink_on(write_client, "storage_write")
    await sink.setup()
    assert write_client.calls == []
