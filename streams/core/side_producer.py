"""A plain producer for records that are not the output of a consumed record.

Under ``exactly_once`` Faust sends every record through the transactional producer of the
target partition, and that transaction commits only when the partition's consumed offsets do.
A record sent from a timer or an HTTP handler has no consumed record behind it, so it would
wait, invisible to read_committed consumers, until the target partition happens to commit
(possibly never). Such records (timer ticks, API input) go out on this producer instead.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName


class SideProducer(AsyncService):
    """Publishes to catalog topics outside stream processing; started on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                self._producer = await kafka_clients.started(
                    kafka_clients.producer(
                        self._settings,
                        acks="all",
                        enable_idempotence=self._settings.idempotent_producer,
                        request_timeout_ms=30_000,
                    )
                )

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        """Send and wait for the broker's acknowledgement."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None  # noqa: S101 - set by start()
        await self._producer.send_and_wait(
            self._settings.topic(topic), value=value, key=key.encode("utf-8")
        )
