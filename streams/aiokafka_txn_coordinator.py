"""A transactional producer keeps looking for its coordinator while the broker restarts.

aiokafka 0.14's ``Sender._find_coordinator`` retries a FindCoordinator request only on three
errors; any other, among them ``KafkaConnectionError`` when the broker closes the connection
mid-request (a broker stopping), is re-raised. It runs inside the producer's sender routine,
which then dies ("Unexpected error in sender routine") and marks the transaction manager
fatally failed: every later send and commit of that producer fails. Under ``exactly_once`` that
is a Faust transactional producer, its table write fails, the commit fails, and the worker
exits (the broker restart chaos test, graceful stop, 2026-12-07; the supervisor restarted it).
Here every retriable error (aiokafka's ``retriable`` flag, as for its other requests) is
retried after a metadata refresh and the producer's retry backoff, as the three were.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.producer.sender import Sender

log = logging.getLogger(__name__)

_ORIGINAL: Any = Sender._find_coordinator


def _retriable(error: KafkaError) -> bool:
    cause = error.__cause__
    return isinstance(cause, KafkaError) and bool(cause.retriable)


async def _find_coordinator_retrying(self: Any, coordinator_type: Any, coordinator_key: Any) -> Any:
    while True:
        try:
            return await _ORIGINAL(self, coordinator_type, coordinator_key)
        except KafkaError as error:
            if not _retriable(error):
                raise
            log.debug("FindCoordinator for %s failed (%r); retrying", coordinator_key, error)
        await self.client.force_metadata_update()
        await asyncio.sleep(self._retry_backoff)


def retry_coordinator_lookups() -> None:
    """Make transactional producers retry retriable FindCoordinator failures (idempotent)."""
    sender_class: Any = Sender
    sender_class._find_coordinator = _find_coordinator_retrying
