"""One route's notifier: its own consumer group on the alerts and trigger topics.

Group ``{app_id}.notifier.{route}``: every route sees every alert once, whatever the others do,
and resumes after a restart from its committed offset. Offsets are committed after each record
is delivered (or dead-lettered), so a worker killed mid-delivery sends that record again when it
comes back: at least once, and a receiver that honours the dedup key (PagerDuty) sees it once.

A delivery that keeps failing (5xx, timeouts, connection refused) is retried with doubling
pauses up to ``notify_retry_attempts`` times, then the alert goes to the dead-letter topic with
the reason (``phaseflow dlq replay`` sends it back to the alerts topic). A permanent failure
(4xx, refused login) is not retried: it is dead-lettered at once and reported by
:meth:`RouteNotifier.problem` (``/ready``) until a delivery succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.notify.delivery import RouteDelivery

log = logging.getLogger(__name__)

_POLL_MS: Final = 1000
_ERROR_PAUSE_SECONDS: Final = 5.0


def notifier_group(settings: Settings, route: str) -> str:
    """The consumer group of ``route``."""
    return f"{settings.app_id}.notifier.{route}"


class _StartAtEnd(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the end offset of every assigned partition the group never committed.

    A new route starts with what is raised from now on, not the topic's history; committing
    that start at once (instead of leaving it to ``auto_offset_reset``) matters after a crash:
    a partition that got its first record only after the start would otherwise be reset to its
    new end on restart, skipping that record.
    """

    def __init__(self, consumer: Any, route: str) -> None:
        self._consumer = consumer
        self._route = route

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are committed after each record."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = [tp for tp in assigned if await self._consumer.committed(tp) is None]
        if not fresh:
            return
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(fresh)
        await self._consumer.commit(ends)
        for tp, offset in ends.items():
            self._consumer.seek(tp, offset)
        log.info(
            "notifier route %s starts %d new partition(s) at their end", self._route, len(ends)
        )


class RouteNotifier(AsyncService):
    """Consumes the alerts and trigger topics in the route's group, hands each record to its
    :class:`RouteDelivery`, commits after it; one per route."""

    def __init__(
        self,
        settings: Settings,
        delivery: RouteDelivery,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.route = delivery.route
        self._settings = settings
        self._delivery = delivery
        self._sleep = sleep
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def group(self) -> str:
        """This route's consumer group."""
        return notifier_group(self._settings, self.route)

    def problem(self) -> str | None:
        """Why this route cannot deliver, or None."""
        return self._delivery.problem()

    async def start(self) -> None:
        if self._task is not None:
            return
        problem = self._delivery.problem()
        if problem is not None:
            log.error("notifier route %s: %s", self.route, problem)
        settings = self._settings
        consumer = kafka_clients.consumer(
            settings,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_seconds * 1000),
        )
        consumer.subscribe(
            [settings.topic(TopicName.ALERTS), settings.topic(TopicName.PHASE_TRIGGERS)],
            listener=_StartAtEnd(consumer, self.route),
        )
        await kafka_clients.started(consumer)
        try:
            await self._delivery.sender.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"notifier-{self.route}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if held := self._delivery.held():
            # Their offsets are not committed: the next start reads them again.
            log.warning(
                "notifier route %s stops with %d alert(s) held for the end of its quiet hours; "
                "not committed, they are read again at the next start",
                self.route,
                held,
            )
        if consumer is not None:
            await consumer.stop()
            await self._delivery.sender.stop()

    def _commit_to(self, partition: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> int:
        """The offset to commit after ``record``: past it, unless an alert held for the end of
        the quiet hours sits at or before it (held alerts must survive a restart)."""
        held = self._delivery.held_from(partition.topic, partition.partition)
        after: int = record.offset + 1
        return after if held is None else min(after, held)

    def assigned(self) -> set[TopicPartition]:
        """The partitions this worker holds in the route's group (empty before the join)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def _run(self) -> None:
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=_POLL_MS)
                for partition, records in batches.items():
                    for record in records:
                        await self._delivery.handle(record)
                        await consumer.commit({partition: self._commit_to(partition, record)})
                held_before = self._delivery.held()
                await self._delivery.release_held()
                if held_before and not self._delivery.held():
                    # Everything held is delivered: the commits it held back catch up.
                    await consumer.commit(
                        {tp: await consumer.position(tp) for tp in consumer.assignment()}
                    )
                await self._delivery.send_summary()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Typically the dead-letter topic unreachable: nothing was committed for the
                # record, so it is read again from the committed offset.
                log.exception(
                    "notifier route %s failed; resuming from its committed offsets", self.route
                )
                await self._sleep(_ERROR_PAUSE_SECONDS)
                partitions = consumer.assignment()
                if partitions:
                    await consumer.seek_to_committed(*partitions)
