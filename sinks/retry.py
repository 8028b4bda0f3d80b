"""The sink's retry policy: which BigQuery errors are transient, and exponential backoff with
full jitter over a bounded number of attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass

import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud.bigquery.retry import DEFAULT_RETRY

# BigQuery error reasons that say "try again" (the same as the client library's own list, plus
# the row-level ones insertAll reports for rows it did not write because of another row).
TRANSIENT_REASONS = frozenset(
    {"rateLimitExceeded", "backendError", "internalError", "badGateway", "timeout", "stopped"}
)
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    gexc.RetryError,  # the library's own bounded retry gave up on a transient error
    gexc.ServerError,  # 5xx
    gexc.TooManyRequests,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 5xx, 429, rate limits, connection errors, timeouts."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        errors = exc.errors or []
        reason = errors[0].get("reason") if errors and isinstance(errors[0], dict) else None
        return reason in TRANSIENT_REASONS
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` tries per call; between them a random delay in
    ``[0, min(cap, base * 2**attempt)]`` (full jitter, so many clients do not retry in step)."""

    max_attempts: int = 4
    base_seconds: float = 0.25
    cap_seconds: float = 8.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def library_retry(timeout_seconds: float) -> Retry:
    """The client library's retry, bounded: it gives up after ``timeout_seconds`` (its default
    is 10 minutes, see tests/integration/test_bigquery_harness.py). Always pair it with
    ``job_retry=None`` on queries, or the library wraps jobs.insert in a second 10-minute retry."""
    bounded: Retry = DEFAULT_RETRY.with_timeout(timeout_seconds)
    return bounded
