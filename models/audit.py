"""The audit trail of mutating HTTP calls: who (key id), what, when, from where.

One :class:`AuditRecord` per accepted call (authenticated, within its rate limit, with a valid
body) is published to ``{prefix}.audit`` (keyed by key id, kept 90 days) *before* the call acts:
if the record cannot be written, the call is refused with 503, so nothing happens unaudited.
The body is recorded as its sha256 digest only: bodies may be large, and the trail must not
become a second copy of the data.

Operator actions on the command line write the same record *after* acting, with the outcome in
``summary`` (key id ``cli:{actor}``, client the host; phaseflow.streams.cli_audit).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from pydantic import Field

from phaseflow.models.events import Event
from phaseflow.models.fields import Text, Timestamp


class AuditRecord(Event):
    """One accepted mutating call."""

    audit_id: Text
    key_id: Text
    action: Text  # "POST /completions"
    body_sha256: Text
    client: Text  # the peer address as the server saw it (no proxy headers are trusted)
    at: Timestamp
    #: What the call was about, e.g. {"game_date": "2026-01-15", "phase": "3"}.
    summary: dict[str, str] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Topic key: the key id, so one key's calls stay in order."""
        return self.key_id


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def audit_record(
    *,
    key_id: str,
    action: str,
    body: bytes,
    client: str | None,
    at: datetime,
    summary: dict[str, str] | None = None,
) -> AuditRecord:
    return AuditRecord(
        audit_id=str(uuid.uuid4()),
        key_id=key_id,
        action=action,
        body_sha256=body_digest(body),
        client=client or "unknown",
        at=at,
        summary=summary or {},
    )
