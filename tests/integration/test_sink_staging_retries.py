"""A flush retried after a failure between staging and its MERGE stages no row twice, on every
staging path; and on the Storage Write paths (protobuf and Arrow rows), a retry after a lost
commit answer or a failed append neither loses nor doubles a row. On the real emulator."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)

from phaseflow.sinks.base import SinkFlushError
from phaseflow.sinks.bigquery_predictions import PredictionSink
from phaseflow.streams.core.bigquery_clients import RetryPolicy
from phaseflow.streams.core.settings import Settings
from tests.fixtures.bigquery import STAGINGS, STORAGE_WRITE_STAGINGS
from tests.integration.test_prediction_sink import (
    FAST_RETRY,
    TIMEOUT,
    DeadLetters,
    RefusingClient,
    recent,
    rows_of,
)

pytestmark = pytest.mark.integration
#: One attempt per call: a failure fails the flush at once (the sink retries the flush).
# A zero deadline: a failed call is never attempted again (with a few milliseconds, a call that
# failed fast and a short jittered pause could still be retried, and the flush succeed).
NO_RETRY = RetryPolicy(deadline_seconds=0.0, initial_seconds=0.05)
ROWS = 25


def staged(client: bigquery.Client, staging_id: str) -> tuple[int, int]:
    """(rows in staging, distinct (flush, seq) among them)."""
    sql = (
        "SELECT COUNT(*) AS n, COUNT(DISTINCT CONCAT(flush_id, ':', CAST(staged_seq AS STRING))) "  # noqa: S608
        f"AS distinct_rows FROM `{staging_id}`"
    )
    row = next(iter(client.query(sql, timeout=TIMEOUT, job_retry=None).result(timeout=TIMEOUT)))
    return int(row["n"]), int(row["distinct_rows"])


@pytest.mark.parametrize("sink_staging", STAGINGS, indirect=True)
async def test_a_flush_retried_after_its_merge_failed_stages_no_row_twice(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    client = RefusingClient(bq_settings)
    sink = PredictionSink(
        bq_settings,
        dead_letter=DeadLetters(),
        client=client,
        retry_policy=FAST_RETRY,
        flush_seconds=60,
    )
    try:
        await sink.start()
        for i in range(ROWS):
            sink.add(recent(f"p{i:02d}", "20.5"))
        client.refuse_all = True  # staged, then the MERGE fails
        with pytest.raises(SinkFlushError, match="attempt 1"):
            await sink.flush()
        assert staged(bq_client, sink.staging_id) == (ROWS, ROWS)
        client.refuse_all = False
        await sink.flush()  # the same batch: staging is not repeated, only the MERGE
    finally:
        await sink.stop()
        client.close()  # type: ignore[no-untyped-call]

    assert staged(bq_client, sink.staging_id) == (ROWS, ROWS)
    assert len(rows_of(bq_client, sink.table_id)) == ROWS
    assert sink.durable_seq == ROWS


class FlakyWriteClient(BigQueryWriteClient):
    """The emulator's Storage Write client, except that the first commit's answer is lost (the
    stream is committed, the caller sees an error) or the first append fails after its rows
    were appended (to a stream that is never committed)."""

    def __init__(self, endpoint: str) -> None:
        channel = grpc.insecure_channel(endpoint)
        super().__init__(transport=BigQueryWriteGrpcTransport(channel=channel))  # type: ignore[no-untyped-call]
        self.lose_commit_answer = False
        self.fail_append = False

    def batch_commit_write_streams(self, *args: Any, **kwargs: Any) -> Any:
        answer = super().batch_commit_write_streams(*args, **kwargs)
        if self.lose_commit_answer:
            self.lose_commit_answer = False
            raise gexc.ServiceUnavailable("the answer to BatchCommitWriteStreams was lost")  # type: ignore[no-untyped-call]
        return answer

    def append_rows(self, *args: Any, **kwargs: Any) -> Any:
        answers = list(super().append_rows(*args, **kwargs))
        if self.fail_append:
            self.fail_append = False
            raise gexc.ServiceUnavailable("the connection broke after the rows were appended")  # type: ignore[no-untyped-call]
        return answers


@pytest.mark.parametrize("sink_staging", STORAGE_WRITE_STAGINGS, indirect=True)
@pytest.mark.parametrize("failure", ["lose_commit_answer", "fail_append"])
async def test_a_storage_write_flush_retried_after_a_staging_failure_stages_each_row_once(
    bq_settings: Settings, bq_client: bigquery.Client, failure: str
) -> None:
    assert bq_settings.bigquery_write_endpoint is not None
    write_client = FlakyWriteClient(bq_settings.bigquery_write_endpoint)
    sink = PredictionSink(
        bq_settings,
        dead_letter=DeadLetters(),
        write_client=write_client,
        retry_policy=NO_RETRY,
        flush_seconds=60,
    )
    try:
        await sink.start()
        for i in range(ROWS):
            sink.add(recent(f"p{i:02d}", "20.5"))
        setattr(write_client, failure, True)
        with pytest.raises(SinkFlushError, match="attempt 1"):
            await sink.flush()
        assert sink.durable_seq == 0
        await sink.flush()
    finally:
        await sink.stop()
        write_client.transport.close()  # type: ignore[no-untyped-call]

    assert staged(bq_client, sink.staging_id) == (ROWS, ROWS)
    assert len(rows_of(bq_client, sink.table_id)) == ROWS
    assert sink.durable_seq == ROWS
    staging = sink.storage_write
    assert staging is not None
    # A lost commit answer: the retry finds the first stream committed and makes none.
    # A failed append: its stream is never committed; the retry stages into a second one.
    assert staging.streams_created == (1 if failure == "lose_commit_answer" else 2)
