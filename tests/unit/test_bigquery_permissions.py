"""A 403 from BigQuery becomes one error naming the permission and the table; the sink keeps its
rows and the runner its offsets; /status shows why. A client double stands in for BigQuery at
the client boundary and raises the real google.api_core exception types."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import TopicPartition
from google.api_core.exceptions import ServiceUnavailable

from phaseflow.agents.predictions.bq import QueryError, QueryRunner
from phaseflow.models.codec import encode
from phaseflow.models.events import Prediction
from phaseflow.sinks.bigquery_predictions import PredictionSink
from phaseflow.sinks.install import PredictionSinkService
from phaseflow.sinks.predictions_consumer import SinkRunner
from phaseflow.streams.components import Components
from phaseflow.streams.core.bigquery_clients import RetryPolicy
from phaseflow.streams.core.bigquery_permissions import BigQueryPermissionError
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.web.worker_state import WorkerState
from tests.fixtures.bigquery_double import ClientDouble, forbidden
from tests.fixtures.polling import poll

SETTINGS = Settings(
    bigquery_project="p", bigquery_dataset="d", topic_prefix="t", sink_staging="insert_all"
)
FAST = RetryPolicy(deadline_seconds=5.0, initial_seconds=0.01, maximum_seconds=0.02)
STAGING = "p.d.player_prop_predictions_staging"
TARGET = "p.d.player_prop_predictions"


def prediction(player: str) -> Prediction:
    return Prediction(
        prediction_id=f"{player}-1",
        game_date=date(2026, 1, 15),
        game_id="G1",
        player_lookup=player,
        system_id="moving_average",
        current_points_line=Decimal("20.5"),
        predicted_points=21.0,
        confidence_score=60.0,
        recommendation="OVER",
        model_version="v1",
        batch_id="b1",
        created_at=datetime(2026, 1, 15, 18, tzinfo=UTC),
    )


async def _no_dead_letters(row: Prediction, reason: str) -> None:
    raise AssertionError(f"unexpected dead letter {row.key}: {reason}")


def sink_on(double: ClientDouble, settings: Settings = SETTINGS) -> PredictionSink:
    return PredictionSink(
        settings,
        dead_letter=_no_dead_letters,
        client=double.as_client(),
        retry_policy=FAST,
        flush_seconds=60,
    )


async def test_a_403_on_the_staging_insert_names_the_permission_and_the_table() -> None:
    message = (
        f"Access Denied: Table {STAGING}: Permission bigquery.tables.updateData denied on table "
        f"{STAGING} (or it may not exist)."
    )
    # The fast insert path and the careful one each meet the 403.
    double = ClientDouble().failing("insert_rows_json", forbidden(message), forbidden(message))
    sink = sink_on(double)
    sink.add(prediction("a"))

    with pytest.raises(Exception, match="attempt 1") as raised:
        await sink.flush()

    error = raised.value.__cause__
    assert isinstance(error, BigQueryPermissionError)
    assert error.permission == "bigquery.tables.updateData"
    assert error.operation.target == STAGING
    assert str(error).count("\n") == 0
    assert "bigquery.tables.updateData" in str(error)
    assert STAGING in str(error)
    assert len(double.named("insert_rows_json")) == 2  # not retried: a 403 does not heal
    assert sink.metrics.retries == 0
    assert sink.buffered == 1
    assert sink.durable_seq == 0
    assert sink.last_error is not None
    assert "bigquery.tables.updateData" in sink.last_error


async def test_a_403_without_a_permission_in_the_message_names_the_likely_one() -> None:
    double = ClientDouble().failing("query_and_wait", forbidden("Access Denied: Project p"))
    sink = sink_on(double)
    sink.add(prediction("a"))

    with pytest.raises(Exception, match="attempt 1") as raised:
        await sink.flush()

    error = raised.value.__cause__
    assert isinstance(error, BigQueryPermissionError)
    assert error.permission == "bigquery.jobs.create"  # a MERGE is a query job
    assert TARGET in str(error)
    assert "Access Denied: Project p" in str(error)


async def test_a_rate_limit_403_is_retried_not_reported_as_a_permission() -> None:
    double = ClientDouble().failing(
        "query_and_wait", forbidden("Exceeded rate limits", reason="rateLimitExceeded")
    )
    sink = sink_on(double)
    sink.add(prediction("a"))

    await sink.flush()

    assert sink.durable_seq == 1
    assert sink.metrics.retries == 1
    assert sink.last_error is None


async def test_calls_pass_no_retry_to_the_client_so_none_is_stacked_on_the_policy() -> None:
    double = ClientDouble()
    sink = sink_on(double)
    await sink.setup()
    sink.add(prediction("a"))
    await sink.flush()

    assert double.calls
    for name, kwargs in double.calls:
        assert kwargs.get("retry", "missing") is None, name
        if name == "query_and_wait":
            assert kwargs["job_retry"] is None
            assert kwargs["api_timeout"] == SETTINGS.bigquery_timeout_seconds


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class _Consumer:
    """What SinkRunner's loop asks of its aiokafka consumer: records once, then commits."""

    def __init__(self, records: list[_Record]) -> None:
        self.tp = TopicPartition(records[0].topic, 0)
        self._pending = records
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[_Record]]:
        records, self._pending = self._pending, []
        return {self.tp: records} if records else {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def pause(self, *_: TopicPartition) -> None: ...

    def resume(self, *_: TopicPartition) -> None: ...


async def test_the_runner_commits_nothing_while_bigquery_denies_the_write() -> None:
    denied = forbidden(f"Permission bigquery.tables.updateData denied on table {STAGING}")
    double = ClientDouble().failing("insert_rows_json", denied, denied)
    sink = sink_on(double)
    runner = SinkRunner(
        SETTINGS,
        topic=TopicName.PREDICTIONS,
        event_type=Prediction,
        sink=sink,
        group_id="g",
    )
    topic = SETTINGS.topic(TopicName.PREDICTIONS)
    rows = [prediction("a"), prediction("b")]
    consumer = _Consumer(
        [_Record(topic, 0, n, p.key.encode(), encode(p)) for n, p in enumerate(rows)]
    )

    # One step of the runner's loop (no broker in a unit test): consume, then commit what is
    # durable. The flush in between is the sink's; it fails on the 403.
    await runner._step(consumer)  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"bigquery\.tables\.updateData"):
        await sink.flush()
    await runner._step(consumer)  # type: ignore[arg-type]

    assert consumer.commits == []
    assert sink.buffered == 2

    await sink.flush()  # the permission was granted: the same rows go through
    await runner._step(consumer)  # type: ignore[arg-type]

    assert consumer.commits == [{consumer.tp: 2}]


class _FailingRunner:
    """A runner whose start meets BigQuery's 403 in the sink's setup (tables)."""

    def __init__(self, sink: PredictionSink) -> None:
        self.sink = sink

    async def start(self) -> None:
        await self.sink.start()

    async def stop(self) -> None:
        await self.sink.stop()


async def _status_when(
    service: PredictionSinkService, condition: Callable[[], Awaitable[bool]], what: str
) -> dict[str, dict[str, Any]]:
    """Run ``service`` until ``condition`` holds, take the worker's sinks status, stop it."""
    running = asyncio.create_task(service.run())
    try:
        await poll(condition, what, give_up_after=30)
        return WorkerState(
            Components(prediction_sink=service), settings=SETTINGS, delivery=None
        ).sinks()
    finally:
        await service.stop()
        await running


async def test_status_shows_why_the_sink_cannot_start() -> None:
    denied = forbidden("Access Denied: Dataset p:d: Permission bigquery.tables.create denied")
    double = ClientDouble().failing("create_table", denied)
    service = PredictionSinkService(
        SETTINGS,
        runner_factory=lambda: _FailingRunner(sink_on(double)),  # type: ignore[arg-type,return-value]
        first_retry_seconds=60,
    )

    async def failed_once() -> bool:
        return service.start_failures > 0

    status = await _status_when(service, failed_once, "the sink's first start to fail")
    sink_status = status["prediction_sink"]
    assert sink_status["running"] is False
    assert "BigQueryPermissionError" in sink_status["problem"]
    assert "bigquery.tables.create" in sink_status["problem"]
    assert "p.d" in sink_status["problem"]


async def test_status_shows_the_retried_error_while_the_sink_starts() -> None:
    """BigQuery answering 503 to the setup: the start retries for its deadline (a minute in
    production) and ``GET /status`` names the error meanwhile, not nothing."""
    unavailable = ServiceUnavailable("BigQuery is overloaded, try again")
    double = ClientDouble().failing("create_dataset", *[unavailable] * 1000)
    slow = RetryPolicy(deadline_seconds=30.0, initial_seconds=0.01, maximum_seconds=0.02)
    sink = PredictionSink(
        SETTINGS, dead_letter=_no_dead_letters, client=double.as_client(), retry_policy=slow
    )
    service = PredictionSinkService(
        SETTINGS,
        runner_factory=lambda: _FailingRunner(sink),  # type: ignore[arg-type,return-value]
        first_retry_seconds=60,
    )

    async def retried() -> bool:
        return len(double.named("create_dataset")) >= 2

    status = await _status_when(service, retried, "the setup's call to be retried")
    assert service.start_failures == 0  # still starting: the deadline has not passed
    sink_status = status["prediction_sink"]
    assert sink_status["running"] is False
    assert sink_status["problem"] == (
        "starting: ServiceUnavailable: 503 BigQuery is overloaded, try again (retrying)"
    )


async def test_without_table_creation_setup_only_checks_and_names_the_missing_table() -> None:
    double = ClientDouble()
    sink = sink_on(double, SETTINGS.model_copy(update={"bigquery_create_tables": False}))

    with pytest.raises(Exception, match=r"PHASEFLOW_BIGQUERY_CREATE_TABLES=false") as raised:
        await sink.setup()

    assert TARGET in str(raised.value)
    assert double.named("create_table") == []
    assert double.named("create_dataset") == []

    double.existing |= {TARGET, STAGING, "p.d.player_prop_predictions_latest"}
    await sink.setup()
    assert double.named("create_table") == []


async def test_a_denied_prediction_query_is_one_query_error_naming_permission_and_table() -> None:
    double = ClientDouble().failing(
        "query_and_wait",
        forbidden("User does not have bigquery.tables.getData permission for table p:d.t."),
    )
    runner = QueryRunner(double.as_client, timeout_seconds=1.0, policy=FAST)

    with pytest.raises(QueryError) as raised:
        await runner.query("SELECT * FROM `p.d.t` WHERE x = 1")

    assert "bigquery.tables.getData" in str(raised.value)
    assert "p.d.t" in str(raised.value)
    assert runner.stats.attempts == 1


async def test_existing_tables_are_only_looked_up_so_create_permissions_are_not_needed() -> None:
    denied = forbidden("Permission bigquery.tables.create denied on dataset p:d")
    double = ClientDouble().failing("create_table", denied).failing("create_dataset", denied)
    double.existing |= {"p.d", TARGET, STAGING, "p.d.player_prop_predictions_latest"}

    await sink_on(double).setup()

    assert [name for name, _ in double.calls] == ["get_dataset"] + ["get_table"] * 3
