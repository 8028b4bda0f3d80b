"""What the broker supports, asked once at worker start: idempotent producers, transactions.

Both start with an ``InitProducerId`` request: without a transactional id for an idempotent
producer, with one (sent to the transaction coordinator) for transactions. That is the first
request every idempotent or transactional producer of the worker sends (the side producer, the
sink's, the lag monitor's, Faust's transactional producers), so the answer here is the answer
they would get. Tansu 0.6 answers both with ``UnknownError``; Apache Kafka with a producer id.
Retriable answers (a coordinator still loading) are retried for ``answer_within`` seconds; if
the broker still has no answer then, the probe fails instead of guessing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaClient
from aiokafka import errors as kafka_errors
from aiokafka.protocol.transaction import InitProducerIdRequest

from streams.settings import Settings

log = logging.getLogger(__name__)

#: Coordinator type of FindCoordinator for transactional ids (0 is consumer groups).
_TRANSACTION_COORDINATOR: Final = 1
_PROBE_TRANSACTION_TIMEOUT_MS: Final = 10_000
_RETRY_PAUSE_SECONDS: Final = 0.5


class BrokerProbeError(Exception):
    """The broker did not say what it supports before the probe's timeout."""


@dataclass(frozen=True)
class Capability:
    """One capability: whether it works and, if not, what the broker answered."""

    supported: bool
    detail: str


@dataclass(frozen=True)
class BrokerCapabilities:
    idempotent_producer: Capability
    transactions: Capability


def probe_transactional_id(settings: Settings) -> str:
    """The probe's transactional id: inside the deployment's namespace like Faust's own."""
    return f"{settings.app_id}-capability-probe"


async def probe_broker(settings: Settings, *, answer_within: float = 30.0) -> BrokerCapabilities:
    """Ask the broker of ``settings`` what it supports (see the module docstring)."""
    client = AIOKafkaClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=int(answer_within * 1000)
    )
    try:
        async with asyncio.timeout(answer_within):
            await client.bootstrap()
    except (TimeoutError, kafka_errors.KafkaError) as error:
        await client.close()
        raise BrokerProbeError(
            f"cannot reach the broker at {settings.bootstrap_servers}: {error!r}"
        ) from None
    try:
        deadline = time.monotonic() + answer_within
        idempotent = await _ask(
            "idempotent producer",
            lambda: _init_producer_id(client, client.get_random_node(), None),
            deadline,
        )
        transactional_id = probe_transactional_id(settings)
        transactions = await _ask(
            "transactions",
            lambda: _init_transactional_id(client, transactional_id),
            deadline,
        )
    finally:
        await client.close()
    return BrokerCapabilities(idempotent_producer=idempotent, transactions=transactions)


async def _init_producer_id(client: Any, node: Any, transactional_id: str | None) -> int:
    response = await client.send(
        node, InitProducerIdRequest(transactional_id, _PROBE_TRANSACTION_TIMEOUT_MS)
    )
    code: int = response.error_code
    return code


async def _init_transactional_id(client: Any, transactional_id: str) -> int:
    coordinator = await client.coordinator_lookup(_TRANSACTION_COORDINATOR, transactional_id)
    return await _init_producer_id(client, coordinator, transactional_id)


async def _ask(what: str, request: Callable[[], Awaitable[int]], deadline: float) -> Capability:
    """Send ``request`` until the broker answers for good; retriable answers are retried."""
    last: object = None
    while True:
        try:
            code = await request()
        except kafka_errors.KafkaError as error:
            if not error.retriable:
                return Capability(supported=False, detail=f"{type(error).__name__}")
            last = error
        else:
            if code == 0:
                return Capability(supported=True, detail="InitProducerId answered a producer id")
            error_type = kafka_errors.for_code(code)
            if not error_type.retriable:
                return Capability(
                    supported=False, detail=f"InitProducerId answered {error_type.__name__}"
                )
            last = error_type.__name__
        if time.monotonic() >= deadline:
            raise BrokerProbeError(f"the broker gave no final answer about {what}: {last}")
        log.debug("broker probe (%s): retrying after %s", what, last)
        await asyncio.sleep(_RETRY_PAUSE_SECONDS)
