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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaClient
from aiokafka import errors as kafka_errors
from aiokafka.protocol.transaction import InitProducerIdRequest

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.clock import Clock, SystemClock
from phaseflow.streams.core.held_records import HeldRecords, is_refused_connection

if TYPE_CHECKING:  # the completion client probes too and must not import the worker's Settings
    from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

#: Coordinator type of FindCoordinator for transactional ids (0 is consumer groups).
_TRANSACTION_COORDINATOR: Final = 1
_PROBE_TRANSACTION_TIMEOUT_MS: Final = 10_000
_RETRY_PAUSE_SECONDS: Final = 0.5
#: Answers that mean "ask again" here though aiokafka does not mark them retriable: another
#: worker of the same deployment is probing with the same transactional id at that moment
#: (two workers started together; seen as a worker exiting 2 on Apache Kafka).
_ASK_AGAIN: Final = frozenset({kafka_errors.ConcurrentTransactions})


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


async def probe_broker(
    settings: Settings, *, answer_within: float = 30.0, clock: Clock | None = None
) -> BrokerCapabilities:
    """Ask the broker of ``settings`` what it supports (see the module docstring)."""
    client = await _bootstrapped_client(settings, answer_within)
    clock = clock or SystemClock()
    give_up_at = clock.now() + timedelta(seconds=answer_within)
    try:
        idempotent = await ask_until_final(
            "idempotent producer",
            lambda: _init_producer_id(client, client.get_random_node(), None),
            clock=clock,
            give_up_at=give_up_at,
        )
        transactional_id = probe_transactional_id(settings)
        transactions = await ask_until_final(
            "transactions",
            lambda: _init_transactional_id(client, transactional_id),
            clock=clock,
            give_up_at=give_up_at,
        )
    finally:
        await client.close()
    return BrokerCapabilities(idempotent_producer=idempotent, transactions=transactions)


async def probe_idempotent_producer(
    connection: kafka_clients.KafkaConnection,
    *,
    answer_within: float = 30.0,
    clock: Clock | None = None,
) -> Capability:
    """Only the idempotent-producer half of :func:`probe_broker` (the completion client's)."""
    client = await _bootstrapped_client(connection, answer_within)
    clock = clock or SystemClock()
    try:
        return await ask_until_final(
            "idempotent producer",
            lambda: _init_producer_id(client, client.get_random_node(), None),
            clock=clock,
            give_up_at=clock.now() + timedelta(seconds=answer_within),
        )
    finally:
        await client.close()


async def _bootstrapped_client(
    connection: kafka_clients.KafkaConnection, answer_within: float
) -> AIOKafkaClient:
    client = kafka_clients.client(connection, request_timeout_ms=int(answer_within * 1000))
    try:
        # A refused connection is said below in one line naming the address and the setting;
        # aiokafka's own ERROR line for it would only precede that line.
        with HeldRecords(("aiokafka",), is_refused_connection):
            async with asyncio.timeout(answer_within):
                await client.bootstrap()
    except (TimeoutError, kafka_errors.KafkaError) as error:
        await client.close()
        # aiokafka says only "Unable to bootstrap"; one more connection tells a wrong password,
        # CA or protocol (naming its setting) from a broker that is down.
        problem = await kafka_clients.connection_problem(
            connection, answer_within=min(answer_within, kafka_clients.CONNECT_TIMEOUT_SECONDS)
        )
        where = connection.bootstrap_servers
        reason = problem.removeprefix(f"{where}: ") if problem else repr(error)
        raise BrokerProbeError(f"cannot reach the broker at {where}: {reason}") from None
    return client


async def _init_producer_id(client: Any, node: Any, transactional_id: str | None) -> int:
    response = await client.send(
        node, InitProducerIdRequest(transactional_id, _PROBE_TRANSACTION_TIMEOUT_MS)
    )
    code: int = response.error_code
    return code


async def _init_transactional_id(client: Any, transactional_id: str) -> int:
    coordinator = await client.coordinator_lookup(_TRANSACTION_COORDINATOR, transactional_id)
    return await _init_producer_id(client, coordinator, transactional_id)


async def ask_until_final(
    what: str,
    request: Callable[[], Awaitable[int]],
    *,
    clock: Clock,
    give_up_at: datetime,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Capability:
    """Send ``request`` (it returns a Kafka error code) until the broker answers for good:
    0 means supported, a non-retriable error unsupported; retriable answers are asked again
    until ``give_up_at``, then :class:`BrokerProbeError`."""
    while True:
        last: object
        try:
            code = await request()
        except kafka_errors.KafkaError as error:
            if not _asks_again(type(error)):
                return Capability(supported=False, detail=type(error).__name__)
            last = error
        else:
            if code == 0:
                return Capability(supported=True, detail="InitProducerId answered a producer id")
            error_type = kafka_errors.for_code(code)
            if not _asks_again(error_type):
                return Capability(
                    supported=False, detail=f"InitProducerId answered {error_type.__name__}"
                )
            last = error_type.__name__
        if clock.now() >= give_up_at:
            raise BrokerProbeError(f"the broker gave no final answer about {what}: {last}")
        log.debug("broker probe (%s): retrying after %s", what, last)
        await pause(_RETRY_PAUSE_SECONDS)


def _asks_again(error_type: type[kafka_errors.KafkaError]) -> bool:
    return bool(error_type.retriable) or error_type in _ASK_AGAIN
