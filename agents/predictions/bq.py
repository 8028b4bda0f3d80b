"""Parameterized BigQuery queries from async code: the shared policy, a count.

Every query runs through :class:`~phaseflow.streams.core.bigquery_clients.BigQueryCalls`: each
attempt in ``asyncio.to_thread`` with a request timeout ``T``
(``PHASEFLOW_BIGQUERY_TIMEOUT_SECONDS``), ``retry=None`` and ``job_retry=None`` (the library's
default retries would block for ~10 minutes against a slow or absent endpoint, see
tests/integration/test_bigquery_harness.py), transient failures retried by the one
:class:`~phaseflow.streams.core.bigquery_clients.RetryPolicy` until
``PHASEFLOW_BIGQUERY_RETRY_SECONDS``. SQL errors (400) and missing permissions (403) are not
retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from phaseflow.streams.core.bigquery_clients import BigQueryCalls, RetryPolicy
from phaseflow.streams.core.bigquery_permissions import BigQueryPermissionError, Operation

log = logging.getLogger(__name__)


class QueryError(RuntimeError):
    """A query failed for good (SQL error, missing permission, or still failing at the retry
    deadline)."""


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
        policy: RetryPolicy,
    ) -> None:
        """``client`` is a client, or a function that returns one (built on first use)."""
        self._client = client
        self.timeout_seconds = timeout_seconds
        self.stats = QueryStats()
        self._calls = BigQueryCalls(policy, timeout_seconds=timeout_seconds, on_retry=self._retried)

    def _retried(self, error: Exception) -> None:
        self.stats.failures += 1
        log.warning("query attempt failed (%s); retrying", error)

    def _run(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.stats.attempts += 1
        timeout = self.timeout_seconds
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        client = self._client if isinstance(self._client, bigquery.Client) else self._client()
        # jobs.query: one round trip when the query finishes within the request (the emulator's
        # always do), where query() + result() take three (insert, status, rows).
        rows = client.query_and_wait(
            sql,
            job_config=config,
            api_timeout=timeout,
            wait_timeout=timeout,
            retry=None,  # type: ignore[arg-type] # retried by the policy; the library accepts None
            job_retry=None,  # type: ignore[arg-type]
        )
        return [dict(row.items()) for row in rows]

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts; raises :class:`QueryError` when it cannot be answered."""
        self.stats.queries += 1
        started = time.monotonic()
        # The tables a query reads are in its SQL; a denied read names the project's dataset.
        operation = Operation("a query", _tables_of(sql), "bigquery.tables.getData")
        try:
            rows = await self._calls.call(operation, lambda: self._run(sql, params))
        except gexc.RetryError as error:
            self.stats.failures += 1
            raise QueryError(f"query failed until the retry deadline: {error}") from error
        except BigQueryPermissionError as error:
            self.stats.failures += 1
            raise QueryError(str(error)) from error
        except (gexc.GoogleAPIError, GoogleAuthError, OSError) as error:
            self.stats.failures += 1
            raise QueryError(f"query rejected: {error}") from error
        finally:
            self.stats.seconds += time.monotonic() - started
        self.stats.rows += len(rows)
        return rows


def _tables_of(sql: str) -> str:
    """The backquoted table ids of ``sql``, for an error message."""
    names = sorted({part for i, part in enumerate(sql.split("`")) if i % 2 == 1})
    return ", ".join(names) or "its tables"
