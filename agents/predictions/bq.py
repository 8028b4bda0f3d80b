"""Parameterized BigQuery queries from async code: a thread, a timeout, a bounded retry, a count.

The google-cloud-bigquery client blocks, so every call runs in ``asyncio.to_thread``. Its default
retries can block for ~10 minutes against a slow or absent endpoint (see
tests/integration/test_bigquery_harness.py), so each attempt passes
``retry=DEFAULT_RETRY.with_timeout(T), job_retry=None`` and a request ``timeout=T``; on top of that
a transient failure is retried here at most ``attempts`` times with a short backoff. SQL errors
(400) are not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

log = logging.getLogger(__name__)

#: Errors worth another attempt: the endpoint was down, slow or overloaded.
TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.RetryError,
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.ServiceUnavailable,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    TimeoutError,
    ConnectionError,
)


class QueryError(RuntimeError):
    """A query failed for good (SQL error, or still failing after the bounded retries)."""


@dataclass
class QueryStats:
    """What a runner did: logical queries, attempts (with retries), rows and time spent."""

    queries: int = 0
    attempts: int = 0
    failures: int = 0
    rows: int = 0
    seconds: float = 0.0


class QueryRunner:
    """Runs parameterized queries on one client; counts them (tests and benchmarks read it)."""

    def __init__(
        self,
        client: bigquery.Client | Callable[[], bigquery.Client],
        *,
        timeout_seconds: float,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
    ) -> None:
        """``client`` is a client, or a function that returns one (built on first use)."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._client = client
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.stats = QueryStats()

    def _run(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        timeout = self.timeout_seconds
        retry = DEFAULT_RETRY.with_timeout(timeout)
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        client = self._client if isinstance(self._client, bigquery.Client) else self._client()
        # jobs.query: one round trip when the query finishes within the request (the emulator's
        # always do), where query() + result() take three (insert, status, rows).
        rows = client.query_and_wait(
            sql,
            job_config=config,
            api_timeout=timeout,
            wait_timeout=timeout,
            retry=retry,
            job_retry=None,  # type: ignore[arg-type] # the library accepts None
        )
        return [dict(row.items()) for row in rows]

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts; raises :class:`QueryError` when it cannot be answered."""
        self.stats.queries += 1
        started = time.monotonic()
        try:
            for attempt in range(1, self.attempts + 1):
                self.stats.attempts += 1
                try:
                    # The thread cannot be cancelled; the request timeout above ends it. The outer
                    # bound only guards against a hang outside the HTTP call.
                    rows = await asyncio.wait_for(
                        asyncio.to_thread(self._run, sql, params), self.timeout_seconds * 2 + 5
                    )
                except TRANSIENT as error:
                    self.stats.failures += 1
                    if attempt == self.attempts:
                        raise QueryError(
                            f"query failed after {attempt} attempt(s): {error}"
                        ) from error
                    log.warning("query attempt %d failed (%s); retrying", attempt, error)
                    await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                except (gexc.GoogleAPICallError, GoogleAuthError) as error:
                    self.stats.failures += 1
                    raise QueryError(f"query rejected: {error}") from error
                else:
                    self.stats.rows += len(rows)
                    return rows
        finally:
            self.stats.seconds += time.monotonic() - started
        raise AssertionError("unreachable")  # pragma: no cover
