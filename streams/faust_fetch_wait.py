"""Faust's worker consumer waits ``kafka_fetch_wait_seconds`` for records, not a fixed 1.5 s.

faust-streaming 0.15 builds its consumer with ``fetch_max_wait_ms=1500`` and no setting for it.
Apache Kafka answers a waiting fetch as soon as a record arrives, so there the wait only bounds
idle fetches; Tansu holds every fetch that finds nothing for the whole wait, so a completion
arriving just after a fetch went out waited up to 1.5 s before the readiness agent saw it.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_WAIT_MS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_ORIGINAL: Any = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _ORIGINAL(self, transport)
    wait_ms = _WAIT_MS.get(self.app)
    if wait_ms is not None:
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; start() has not run yet.
        consumer._fetch_max_wait_ms = wait_ms
    return consumer


def use_fetch_wait(app: Any, seconds: float) -> None:
    """Make ``app``'s worker consumer wait at most ``seconds`` per fetch (idempotent)."""
    _WAIT_MS[app] = max(1, round(seconds * 1000))
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class._create_worker_consumer = _create_worker_consumer
