"""Sending many records at once without pacing them one round trip at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.topics import TopicName


async def send_all(publisher: Publisher, messages: Iterable[tuple[TopicName, str, bytes]]) -> int:
    """Send every message concurrently (the producer batches them); wait until all are acked."""
    sends = [publisher.send(topic, key, value) for topic, key, value in messages]
    await asyncio.gather(*sends)
    return len(sends)
