"""Alerts onto the alerts topic: what the lag monitor's alerts go through in the worker."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName


class KafkaAlertPublisher(AsyncService):
    """An :data:`AlertPublisher` writing to ``{prefix}.alerts``, keyed ``{kind}:{subject}``."""

    def __init__(self, settings: Settings, **producer_options: Any) -> None:
        self._topic = settings.topic(TopicName.ALERTS)
        self._settings = settings
        self._options = producer_options
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            self._producer = await kafka_clients.started(
                kafka_clients.producer(
                    self._settings,
                    acks="all",
                    enable_idempotence=self._settings.idempotent_producer,
                    **self._options,
                )
            )

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __call__(self, alert: Alert) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaAlertPublisher used before start()")
        await self._producer.send_and_wait(
            self._topic, value=encode(alert), key=alert.key.encode("utf-8")
        )
