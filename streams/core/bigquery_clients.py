"""BigQuery for every caller (sinks, prediction path, seed, demo): the one place a client is built
and the one retry policy every call uses (docs/bigquery.md).

The client: ``PHASEFLOW_BIGQUERY_PROJECT``, ``_LOCATION`` (default location of query jobs and new
datasets) and either ``_ENDPOINT`` (the emulator: anonymous credentials, no credential lookup on a
dev or CI machine) or Google's API with Application Default Credentials (which read
``GOOGLE_APPLICATION_CREDENTIALS`` first).

The retry: :class:`RetryPolicy`, built on ``google.api_core.retry``, retries only transient
errors (:func:`is_transient`) with full-jitter exponential backoff until
``PHASEFLOW_BIGQUERY_RETRY_SECONDS`` have passed. It is never stacked on the library's own
retry: sync callers pass :meth:`RetryPolicy.sync` as the call's ``retry=`` (which replaces the
library's default) and ``job_retry=None``; async callers use :class:`BigQueryCalls`, which
retries with :meth:`RetryPolicy.asynchronous` around attempts that each run in a thread with a
timeout and pass ``retry=None`` to the client. The library's defaults would retry for 10
minutes, twice nested for queries (tests/integration/test_bigquery_harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import AsyncRetry, Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)

from phaseflow.streams.core.bigquery_permissions import Operation, permission_error
from phaseflow.streams.core.settings import Settings, env_var

T = TypeVar("T")

#: BigQuery error reasons that say "try again" (the library's own list, plus the row-level
#: ``stopped`` insertAll reports for rows it did not write because of another row).
TRANSIENT_REASONS: Final = frozenset(
    {"rateLimitExceeded", "backendError", "internalError", "badGateway", "timeout", "stopped"}
)
_TRANSIENT_TYPES: Final[tuple[type[BaseException], ...]] = (
    gexc.ServerError,  # 5xx
    gexc.TooManyRequests,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
    TimeoutError,
)


class TransientError(RuntimeError):
    """Raised by a caller for an outcome worth another attempt that BigQuery did not report as
    an error (rows insertAll left unwritten for a transient reason; a table just re-created)."""


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 5xx, 429, rate limits, connection errors, timeouts."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # a certificate problem does not heal by itself
    if isinstance(exc, (TransientError, *_TRANSIENT_TYPES)):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        errors = exc.errors or []
        reason = errors[0].get("reason") if errors and isinstance(errors[0], dict) else None
        return reason in TRANSIENT_REASONS
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient errors for ``deadline_seconds``; between attempts a random pause in
    ``[0, min(maximum, initial * multiplier**n)]`` (full jitter, so clients do not retry in step).
    The deadline is checked before each pause: the last attempt may run up to its own timeout."""

    deadline_seconds: float
    initial_seconds: float = 0.25
    maximum_seconds: float = 8.0
    multiplier: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(deadline_seconds=settings.bigquery_retry_seconds)

    def sync(self, on_error: Callable[[Exception], None] | None = None) -> Retry:
        """For a blocking call's ``retry=`` (replaces the library's default retry)."""
        return Retry(
            predicate=is_transient,
            initial=self.initial_seconds,
            maximum=self.maximum_seconds,
            multiplier=self.multiplier,
            timeout=self.deadline_seconds,
            on_error=on_error,
        )

    def asynchronous(self, on_error: Callable[[Exception], None] | None = None) -> AsyncRetry:
        """Around a coroutine whose attempts call the client with ``retry=None``."""
        return AsyncRetry(
            predicate=is_transient,
            initial=self.initial_seconds,
            maximum=self.maximum_seconds,
            multiplier=self.multiplier,
            timeout=self.deadline_seconds,
            on_error=on_error,
        )


def make_bigquery_client(settings: Settings) -> bigquery.Client:
    """A client for ``settings.bigquery_project`` in ``settings.bigquery_location``.

    With ``bigquery_endpoint`` set (the local emulator) it sends no credentials: the emulator
    accepts anonymous requests and there must be no lookup of Google credentials on a dev or
    CI machine. Unset, it uses Application Default Credentials against Google's API.
    """
    if settings.bigquery_endpoint:
        return bigquery.Client(
            project=settings.bigquery_project,
            # google-auth leaves this constructor unannotated.
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
            location=settings.bigquery_location,
        )
    return bigquery.Client(project=settings.bigquery_project, location=settings.bigquery_location)


def make_write_client(settings: Settings) -> BigQueryWriteClient:
    """A Storage Write API client: plaintext gRPC without credentials to
    ``settings.bigquery_write_endpoint`` (the emulator's gRPC port), else Google's endpoint with
    Application Default Credentials. Refuses to send rows meant for the emulator to Google."""
    if settings.bigquery_write_endpoint:
        channel = grpc.insecure_channel(settings.bigquery_write_endpoint)
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))  # type: ignore[no-untyped-call]
    if settings.bigquery_endpoint:
        raise ValueError(
            f"Storage Write staging ({env_var('sink_staging')}=storage_write or "
            f"storage_write_arrow) with {env_var('bigquery_endpoint')} set "
            f"needs {env_var('bigquery_write_endpoint')} (the emulator's gRPC host:port)"
        )
    return BigQueryWriteClient()  # type: ignore[no-untyped-call]


def ensure_dataset(
    client: bigquery.Client, dataset_id: str, *, timeout: float, retry: Retry | None
) -> bigquery.Dataset:
    """Create ``dataset_id`` (bare or ``project.dataset``) in the client's location unless it
    exists; safe to call repeatedly. ``retry``: :meth:`RetryPolicy.sync`, or None when the caller
    retries the whole call."""
    if "." not in dataset_id:
        dataset_id = f"{client.project}.{dataset_id}"
    # Looked up first: an existing dataset then needs only bigquery.datasets.get, not create.
    with contextlib.suppress(gexc.NotFound):
        found: bigquery.Dataset = client.get_dataset(
            dataset_id,
            timeout=timeout,
            retry=retry,  # type: ignore[arg-type] # the library accepts None
        )
        return found
    dataset: bigquery.Dataset = client.create_dataset(
        dataset_id,
        exists_ok=True,
        timeout=timeout,
        retry=retry,  # type: ignore[arg-type] # the library accepts None
    )
    return dataset


class BigQueryCalls:
    """Runs blocking client calls from async code under the one policy.

    Each attempt runs in ``asyncio.to_thread`` within ``timeout_seconds`` (the function passes
    the same request timeout and ``retry=None`` to the client) and, with ``throttle``, inside
    it; transient failures are retried by :meth:`RetryPolicy.asynchronous`, so the pauses are
    cancellable. A 403 that is not a rate limit becomes a
    :class:`~phaseflow.streams.core.bigquery_permissions.BigQueryPermissionError` naming the
    permission and the table of the :class:`~phaseflow.streams.core.bigquery_permissions.Operation`.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        timeout_seconds: float,
        on_retry: Callable[[Exception], None] | None = None,
        throttle: Callable[[], contextlib.AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        self.policy = policy
        self.timeout_seconds = timeout_seconds
        self._retry = policy.asynchronous(on_error=on_retry)
        self._throttle = throttle or _no_throttle

    async def attempt(self, operation: Operation, fn: Callable[[], T]) -> T:
        """One attempt, no retry: ``fn`` in a thread, bounded."""
        # The thread is bounded by the request timeout ``fn`` passes; this outer bound only
        # guards against a call that ignores it (the thread is then abandoned, not cancelled).
        outer = 2 * self.timeout_seconds + 5.0
        try:
            async with self._throttle():
                return await asyncio.wait_for(asyncio.to_thread(fn), timeout=outer)
        except gexc.Forbidden as exc:
            denied = permission_error(exc, operation)
            if denied is None:
                raise
            raise denied from exc

    async def call(
        self,
        operation: Operation,
        fn: Callable[[], T],
        *,
        on_missing: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``fn`` attempted until it succeeds, fails for good, or the deadline passes (then
        ``google.api_core.exceptions.RetryError`` from the last transient error).

        ``on_missing``: on 404 (a table or dataset went away: an emulator without persistence
        restarted, an operator dropped it) await it, e.g. to create them again, and retry."""

        async def once() -> T:
            try:
                return await self.attempt(operation, fn)
            except gexc.NotFound as exc:
                if on_missing is None:
                    raise
                await on_missing()
                raise TransientError(f"{exc.message}; created again") from exc

        result: T = await self._retry(once)()
        return result


@contextlib.asynccontextmanager
async def _no_throttle() -> AsyncIterator[None]:
    yield
