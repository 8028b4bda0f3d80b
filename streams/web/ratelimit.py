"""Per-key token buckets: a burst of ``per_minute`` calls, refilled at ``per_minute / 60``/s."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``acquire(key)`` returns 0 when a call may go ahead, else the seconds to wait.

    ``clock`` is a monotonic clock in seconds (injectable for tests). Buckets exist only for
    authenticated key ids, so their number is bounded by the configured keys.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> int:
        """Take one token for ``key``; 0 if granted, else whole seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.capacity, updated=now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        # Retry-After is whole seconds (RFC 9110); round up so a retry then really succeeds.
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
