"""The lifecycle every long-lived thing shares: ``start()``/``stop()`` and ``async with``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncService(ABC):
    """Entering starts, leaving stops; ``stop()`` must be idempotent."""

    @abstractmethod
    async def start(self) -> None:
        """Connect and begin work."""

    @abstractmethod
    async def stop(self) -> None:
        """Finish work (flush, commit) and release resources; safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
