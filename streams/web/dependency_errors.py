"""Which failures of a request are a dependency's (broker, BigQuery, network), not a bug.

The HTTP contract (docs/http-api.md) answers those with 503 and the reason, so a caller knows
to retry later; only a failure of phaseflow's own code is a 500.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from google.api_core.exceptions import GoogleAPIError


def dependency_failure(error: BaseException) -> str | None:
    """The 503 reason for ``error`` (or an error it was raised from) when a dependency
    failed, else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _reason(current)
        if reason is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def _reason(error: BaseException) -> str | None:
    if isinstance(error, KafkaError):
        return f"the broker failed the request: {_describe(error)}"
    if isinstance(error, GoogleAPIError):
        return f"BigQuery failed the request: {_describe(error)}"
    if isinstance(error, (ConnectionError, TimeoutError)):
        return f"a dependency did not answer: {_describe(error)}"
    return None


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    name = type(error).__name__
    return f"{name}: {text[0]}" if text and text[0] else name
