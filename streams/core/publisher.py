"""The narrow interface agents publish through, so they can be tested without a broker."""

from __future__ import annotations

from typing import Protocol

from phaseflow.streams.core.topics import TopicName


class Publisher(Protocol):
    """Sends one already-encoded record to a catalog topic."""

    async def send(self, topic: TopicName, key: str, value: bytes) -> None: ...
