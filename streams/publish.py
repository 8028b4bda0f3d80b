"""A small async client for processors: publish PhaseCompletion events.

Retried publishes never double-count: every completion carries an ``execution_id`` and the
readiness agent drops ids it has seen. Where the broker supports it (Apache Kafka) the producer
is also idempotent, so the broker itself drops retried batches.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from models.codec import encode
from models.events import PhaseCompletion
from streams.lifecycle import AsyncService
from streams.settings import Settings
from streams.topics import TopicName


class CompletionPublisher(AsyncService):
    """Publishes completions to ``{prefix}.phase-completions``, keyed by game date."""

    def __init__(
        self, settings: Settings, *, idempotent: bool | None = None, **producer_options: Any
    ) -> None:
        self._settings = settings
        self._topic = settings.topic(TopicName.PHASE_COMPLETIONS)
        idempotent = settings.idempotent_producer if idempotent is None else idempotent
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            **producer_options,
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, completion: PhaseCompletion) -> None:
        """Send one completion and wait until the broker acknowledged it."""
        await self._producer.send_and_wait(
            self._topic, value=encode(completion), key=completion.key.encode("utf-8")
        )

    async def publish_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (tests and replays of dead letters)."""
        await self._producer.send_and_wait(self._topic, value=value, key=key)


async def publish_from_cli(
    settings: Settings,
    *,
    processor: str,
    game_date: str,
    phase: str,
    status: str,
    record_count: int,
    execution_id: str | None,
) -> int:
    completion = PhaseCompletion.model_validate(
        {
            "processor_name": processor,
            "game_date": game_date,
            "phase": int(phase) if phase.isdigit() else phase,
            "status": status,
            "record_count": record_count,
            "execution_id": execution_id or str(uuid.uuid4()),
            "correlation_id": f"cli-{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).isoformat(),
        }
    )
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(completion)
    print(f"published {completion.processor_name} {completion.game_date} {completion.status}")  # noqa: T201
    return 0
