"""A 403 from BigQuery as one line that says which IAM permission is missing on which table.

BigQuery answers a call the service account may not make with ``403 Forbidden`` (reason
``accessDenied``) and usually names the permission in the message ("... does not have
bigquery.tables.updateData permission ..."). That name is used when present; otherwise the
permission the operation most likely needs. docs/bigquery.md lists the roles per feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from google.api_core import exceptions as gexc

#: 403 reasons that are not about IAM: a rate limit (transient) or an exhausted quota.
_NOT_IAM: Final = frozenset({"rateLimitExceeded", "quotaExceeded"})
_PERMISSION: Final = re.compile(r"\bbigquery\.[A-Za-z]+\.[A-Za-z]+\b")


@dataclass(frozen=True)
class Operation:
    """What a call does, for its error: ``what`` on ``target`` (a table, view, dataset or
    project id) needs ``permission`` (the likeliest one, when BigQuery does not say)."""

    what: str
    target: str
    permission: str


class BigQueryPermissionError(RuntimeError):
    """BigQuery refused a call for lack of an IAM permission; not retried by the call (the
    caller keeps its work and tries again later, when the permission may have been granted)."""

    def __init__(self, operation: Operation, permission: str, detail: str) -> None:
        self.operation = operation
        self.permission = permission
        self.detail = detail
        super().__init__(
            f"BigQuery denied {operation.what} on {operation.target}: the service account needs "
            f"{permission} (docs/bigquery.md lists the roles); BigQuery said: {detail}"
        )


def permission_error(exc: gexc.Forbidden, operation: Operation) -> BigQueryPermissionError | None:
    """The error for ``exc`` when it is about IAM, else None (rate limit, quota)."""
    reasons = {e.get("reason") for e in exc.errors or [] if isinstance(e, dict)}
    if reasons & _NOT_IAM:
        return None
    message = str(exc.message or exc)
    named = _PERMISSION.search(message)
    permission = named.group(0) if named else operation.permission
    first_line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return BigQueryPermissionError(operation, permission, first_line)
