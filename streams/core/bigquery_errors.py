"""One line for a failed BigQuery call: what a sink's status and log say, without the
transport's nested repr.

A call to an unreachable endpoint fails with ``requests``' ConnectionError around urllib3's
``HTTPConnectionPool(host=..., port=...): Max retries exceeded with url: ... (Caused by
NewConnectionError(...: Failed to establish a new connection: [Errno 111] Connection refused))``:
~300 characters whose point ("Connection refused") is at the end, cut off in a status table.
"""

from __future__ import annotations

import re
from typing import Final

import requests
from google.api_core import exceptions as gexc

_ERRNO: Final = re.compile(r"\[Errno -?\d+\] ([^'\"\)\]]+)")


def _where(endpoint: str | None) -> str:
    return f"BigQuery at {endpoint}" if endpoint else "Google's BigQuery API"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def describe_bigquery_error(exc: BaseException, endpoint: str | None) -> str:
    """``exc`` of a BigQuery call (to ``endpoint``; None: Google's API) as one line."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        # The policy's deadline passed: the last error is the reason.
        return f"{describe_bigquery_error(exc.cause, endpoint)} (retried until the deadline)"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with {_where(endpoint)} failed: {_first_line(exc)[:200]}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        found = _ERRNO.search(str(exc))
        reason = found.group(1).strip() if found else "the connection failed"
        return f"cannot connect to {_where(endpoint)}: {reason}"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{_where(endpoint)} did not answer within the request timeout"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
