"""The processors' client: publish PhaseCompletion events to ``{prefix}.phase-completions``.

A processor needs only :class:`ClientSettings` (broker URL, topic prefix, producer idempotence,
read from the same ``PHASEFLOW_*`` variables as the worker). This module imports neither Faust
nor BigQuery nor the worker's :class:`phaseflow.streams.core.settings.Settings`
(tests/unit/test_client.py checks that in a fresh interpreter); ``phaseflow publish`` sends through
it too.

Delivery rules (docs/client.md):

* Each event is validated as a :class:`PhaseCompletion` before it is sent, and keyed by its game
  date: the readiness agent reads one date's completions from one partition.
* ``acks=all``; aiokafka retries a failed batch until ``request_timeout`` has passed. Retried
  publishes never double-count: the readiness agent drops an ``execution_id`` it has seen, and
  where the broker has idempotent producers (Apache Kafka, not Tansu) the producer is idempotent
  too, so the broker itself drops retried batches. ``auto`` asks the broker once, at start.
* Every failure is one exception with one line that says what to do: the broker unreachable
  within ``connect_timeout`` (:class:`BrokerUnavailableError`), an event that is not a valid
  completion (:class:`InvalidCompletionError`), a send the broker did not acknowledge in time
  (:class:`CompletionNotPublishedError`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import Field, ValidationError, model_validator

from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.broker_probe import BrokerProbeError, probe_idempotent_producer
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.broker_connection import BrokerConnectionSettings, Idempotence
from phaseflow.streams.core.env_check import renamed_variables
from phaseflow.streams.core.kafka_clients import KafkaConnection, connection_problem
from phaseflow.streams.core.kafka_security import KafkaSecurity
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.topic_names import TopicName

#: How long :meth:`CompletionPublisher.start` may take to reach the broker.
CONNECT_TIMEOUT_SECONDS: Final = 10.0
#: How long one publish may take, aiokafka's retries included.
REQUEST_TIMEOUT_SECONDS: Final = 30.0
_RETRY_BACKOFF_MS: Final = 200


class ClientSettings(BrokerConnectionSettings):
    """What a processor configures: the connection settings and producer idempotence.

    The Kafka security settings (TLS/SASL) are fields of :class:`BrokerConnectionSettings`, so
    the worker and this client read them from the same variables.
    """

    kafka_producer_idempotence: Idempotence = Field(
        "auto",
        description=(
            "Idempotent producer. `auto`: where the broker has it (asked at start); `true` on a "
            "broker without it fails at start; `false`: never."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _no_renamed_variable(cls, data: Any) -> Any:
        # Only the client's own settings: the worker's (PHASEFLOW_WEB_PORT...) may share the
        # environment and are none of the client's business.
        problems = renamed_variables(os.environ, cls.model_fields)
        if problems:
            raise ValueError("; ".join(problems))
        return data


class PublisherSettings(Protocol):
    """What the publisher reads: :class:`ClientSettings` or the worker's ``Settings``."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def kafka_producer_idempotence(self) -> Idempotence: ...

    @property
    def kafka_security(self) -> KafkaSecurity: ...

    def topic(self, name: str) -> str: ...


class BrokerUnavailableError(ConnectionError):
    """The broker did not answer within the connect timeout."""


class IdempotenceUnavailableError(ValueError):
    """``kafka_producer_idempotence=true`` on a broker without idempotent producers."""


class InvalidCompletionError(ValueError):
    """The event is not a valid PhaseCompletion; the message names each field's problem."""


class CompletionNotPublishedError(ConnectionError):
    """The broker did not acknowledge a completion; publishing it again is safe."""


#: Answers whether the broker at the given bootstrap servers has idempotent producers.
IdempotenceProbe = Callable[[str, float], Awaitable[bool]]


async def probe_idempotence(connection: KafkaConnection, answer_within: float) -> bool:
    """The broker's answer to ``InitProducerId`` (phaseflow.streams.broker_probe)."""
    capability = await probe_idempotent_producer(connection, answer_within=answer_within)
    return capability.supported


def validate_completion(completion: PhaseCompletion | Mapping[str, Any]) -> PhaseCompletion:
    """``completion`` checked as the readiness agent will check it, or
    :class:`InvalidCompletionError`. A model is checked again: ``model_construct`` skips checks."""
    # A model built without checks may hold any type: its fields are checked next, not here.
    data = (
        completion.model_dump(warnings=False)
        if isinstance(completion, PhaseCompletion)
        else completion
    )
    try:
        return PhaseCompletion.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'completion'}: {detail['msg']}"
            for detail in error.errors()
        )
        raise InvalidCompletionError(f"not a valid PhaseCompletion: {problems}") from None


class CompletionPublisher(AsyncService):
    """Publishes completions to ``{prefix}.phase-completions``, keyed by game date.

    Use it as ``async with CompletionPublisher(ClientSettings()) as publisher`` or call
    :meth:`start` and :meth:`stop` (stopping twice is fine). ``producer_options`` go to
    aiokafka's producer as they are (e.g. ``linger_ms`` for bulk loads).
    """

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        probe: IdempotenceProbe | None = None,
        **producer_options: Any,
    ) -> None:
        self._settings = settings
        self._topic = settings.topic(TopicName.PHASE_COMPLETIONS)
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._probe = probe or (lambda _servers, within: probe_idempotence(settings, within))
        self._producer_options = producer_options
        self._producer: AIOKafkaProducer | None = None
        self.idempotent: bool | None = None
        """Whether the running producer is idempotent; None until started."""

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        if self._producer is not None:
            return
        idempotent = await self._resolve_idempotence()
        producer = kafka_clients.producer(
            self._settings,
            acks="all",
            enable_idempotence=idempotent,
            request_timeout_ms=int(self._request_timeout * 1000),
            retry_backoff_ms=_RETRY_BACKOFF_MS,
            **self._producer_options,
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await producer.start()
        except (TimeoutError, KafkaConnectionError) as error:
            await producer.stop()
            raise await self._unreachable(error) from None
        except BaseException:
            # A producer whose start failed still holds its client; closing it here keeps
            # the failure to the caller's one error instead of an "Unclosed" report at exit.
            await producer.stop()
            raise
        self._producer = producer
        self.idempotent = idempotent

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, completion: PhaseCompletion | Mapping[str, Any]) -> PhaseCompletion:
        """Validate and send one completion; return it once the broker acknowledged it."""
        event = validate_completion(completion)
        try:
            await self._running().send_and_wait(
                self._topic, value=encode(event), key=event.key.encode("utf-8")
            )
        except KafkaError as error:
            raise CompletionNotPublishedError(
                f"{event.processor_name} {event.game_date} {event.status} was not published to "
                f"{self._topic}: {type(error).__name__}: {error}; publishing it again is safe "
                "(the readiness agent drops a repeated execution_id)"
            ) from None
        return event

    async def publish_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are, unchecked (tests and replays of dead letters)."""
        await self._running().send_and_wait(self._topic, value=value, key=key)

    def _running(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(
                "CompletionPublisher is not started: use `async with` or await start() first"
            )
        return self._producer

    async def _resolve_idempotence(self) -> bool:
        wanted = self._settings.kafka_producer_idempotence
        if wanted is False:
            return False
        try:
            supported = await self._probe(self._settings.bootstrap_servers, self._connect_timeout)
        except BrokerProbeError as error:  # its message names the address and the reason
            raise BrokerUnavailableError(_with_hint(str(error))) from None
        if wanted is True and not supported:
            raise IdempotenceUnavailableError(
                f"PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE=true but the broker at "
                f"{self._settings.bootstrap_servers} has no idempotent producers (Tansu); "
                "set it to auto or false"
            )
        return supported

    async def _unreachable(self, error: BaseException) -> BrokerUnavailableError:
        # aiokafka's "Unable to bootstrap" hides a wrong password, CA or protocol; one more
        # connection names the setting to fix.
        reason = (
            await connection_problem(self._settings, answer_within=self._connect_timeout)
            or str(error)
            or type(error).__name__
        )
        return BrokerUnavailableError(
            _with_hint(
                f"cannot reach the Kafka broker at {self._settings.bootstrap_servers} within "
                f"{self._connect_timeout:g} s ({reason})"
            )
        )


def _with_hint(message: str) -> str:
    """``message`` with what to do, unless it names the setting to fix already."""
    if "PHASEFLOW_" in message:
        return message
    return f"{message}; start it or set PHASEFLOW_BROKER_URL"
