"""The one BigQuery retry policy and client construction (streams/core/bigquery_clients.py)."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from phaseflow.agents.predictions.bq import QueryRunner
from phaseflow.streams.core.bigquery_clients import (
    BigQueryCalls,
    RetryPolicy,
    TransientError,
    is_transient,
    make_bigquery_client,
)
from phaseflow.streams.core.bigquery_permissions import Operation
from phaseflow.streams.core.settings import Settings
from tests.fixtures.bigquery_double import ClientDouble

FAST = RetryPolicy(deadline_seconds=5.0, initial_seconds=0.01, maximum_seconds=0.02)
OP = Operation("a test call", "p.d.t", "bigquery.tables.getData")


def unavailable(message: str = "backend down") -> gexc.ServiceUnavailable:
    return gexc.ServiceUnavailable(message)  # type: ignore[no-untyped-call]


def test_transient_errors_are_5xx_429_rate_limits_connections_and_timeouts() -> None:
    rate_limited = gexc.Forbidden("slow down", errors=[{"reason": "rateLimitExceeded"}])  # type: ignore[no-untyped-call]
    for error in (
        unavailable(),
        gexc.InternalServerError("oops"),  # type: ignore[no-untyped-call]
        gexc.TooManyRequests("429"),  # type: ignore[no-untyped-call]
        rate_limited,
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("slow"),
        TimeoutError(),
        TransientError("rows stopped"),
    ):
        assert is_transient(error), error
    for error in (
        gexc.BadRequest("invalidQuery"),  # type: ignore[no-untyped-call]
        gexc.Forbidden("Access Denied", errors=[{"reason": "accessDenied"}]),  # type: ignore[no-untyped-call]
        gexc.NotFound("no table"),  # type: ignore[no-untyped-call]
        requests.exceptions.SSLError("bad certificate"),
        ValueError("a bug"),
    ):
        assert not is_transient(error), error


async def test_a_call_is_retried_until_it_succeeds_and_each_retry_is_reported() -> None:
    errors: list[Exception] = []
    calls = BigQueryCalls(FAST, timeout_seconds=1.0, on_retry=errors.append)
    answers: list[BaseException | str] = [unavailable(), TimeoutError(), "rows"]

    def flaky() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await calls.call(OP, flaky) == "rows"
    assert [type(e) for e in errors] == [gexc.ServiceUnavailable, TimeoutError]


async def test_a_transient_error_past_the_deadline_is_a_retry_error_from_the_last_one() -> None:
    policy = RetryPolicy(deadline_seconds=0.05, initial_seconds=0.01, maximum_seconds=0.01)
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise requests.exceptions.ConnectionError("connection refused")

    calls = BigQueryCalls(policy, timeout_seconds=1.0)
    with pytest.raises(gexc.RetryError) as raised:
        await calls.call(OP, down)

    assert isinstance(raised.value.cause, requests.exceptions.ConnectionError)
    assert attempts >= 2


async def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    attempts = 0

    def bad_sql() -> None:
        nonlocal attempts
        attempts += 1
        raise gexc.BadRequest("Syntax error")  # type: ignore[no-untyped-call]

    calls = BigQueryCalls(FAST, timeout_seconds=1.0)
    with pytest.raises(gexc.BadRequest):
        await calls.call(OP, bad_sql)

    assert attempts == 1


def test_the_sync_and_async_retry_are_the_same_policy() -> None:
    policy = RetryPolicy.from_settings(Settings(bigquery_retry_seconds=42.0))
    sync, asynchronous = policy.sync(), policy.asynchronous()
    assert sync._timeout == asynchronous._timeout == 42.0
    assert sync._predicate is asynchronous._predicate is is_transient


async def test_the_query_runner_counts_attempts_under_the_policy() -> None:
    double = ClientDouble(query_rows=[{"n": 3}]).failing("query_and_wait", unavailable())
    runner = QueryRunner(double.as_client, timeout_seconds=1.0, policy=FAST)

    assert await runner.query("SELECT 3 AS n") == [{"n": 3}]
    assert (runner.stats.queries, runner.stats.attempts, runner.stats.failures) == (1, 2, 1)
    assert all(kwargs["retry"] is None for kwargs in double.named("query_and_wait"))


def test_the_client_gets_the_location_and_anonymous_credentials_for_the_emulator() -> None:
    client = make_bigquery_client(
        Settings(
            bigquery_project="p",
            bigquery_endpoint="http://127.0.0.1:9",
            bigquery_location="europe-west1",
        )
    )
    try:
        assert client.project == "p"
        assert client.location == "europe-west1"
        assert isinstance(client._credentials, AnonymousCredentials)
    finally:
        client.close()  # type: ignore[no-untyped-call]
