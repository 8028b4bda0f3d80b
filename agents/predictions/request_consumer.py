"""Feeds ``{prefix}.prediction-requests`` to the prediction worker in batches.

A plain consumer with its own group (``Settings.prediction_workers_group``), at least once,
rather than a Faust agent in the app's group:

- Nothing the worker produces joins a Faust transaction: predictions, "done" reports and dead
  letters go out on the side producer (they land on other topics' partitions, where a Faust
  transaction would hold them). So ``exactly_once`` bought the worker nothing, while correctness
  already rests on identity: prediction ids are deterministic (batch, date, player, system,
  line), the predictions topic is compacted by them, the sink's MERGE keeps one row per id and
  the coordinator counts a player once per batch.
- faust-streaming 0.15's ``stream.take_events`` under ``exactly_once`` stopped delivering
  requests after a kill -9 and restart (two or three batches, then nothing with ~100 requests
  behind on every request partition, in every chaos run; a watchdog restart was the only way
  out, 80-180 s). The plain consumer has no such state.

A batch is up to ``prediction_batch_size`` records, collected for at most
``prediction_batch_wait_seconds`` after the first one arrives, and no longer once the consumer
has read every owned partition to its end and the batch's oldest request was published longer
than that window ago (a backlog, as after a restart, is not held back; requests being published
now still get their window to gather in one batch, so their history is loaded in one query).
Offsets are committed only after :meth:`PredictionWorker.handle_batch` returned, i.e. after
every prediction and report of the batch was acknowledged by the broker. A crash, a failed
batch (broker unreachable) or a rebalance before that re-delivers the batch, which the
identities above make harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)

#: How long one poll waits when no batch is being collected (bounds how fast stop() is seen).
_IDLE_POLL_SECONDS: Final = 0.5
_START_RETRY_SECONDS: Final = 5.0

BatchHandler = Callable[[Sequence[tuple[bytes, Origin]]], Awaitable[object]]


class PredictionRequestConsumer(AsyncService):
    """Runs ``handle_batch`` over the request topic; see the module docstring.

    ``make_consumer`` builds the Kafka consumer (a fresh one per start attempt); the default
    subscribes the workers' group to the request topic. ``monotonic`` times the batch window.
    """

    def __init__(
        self,
        settings: Settings,
        handle_batch: BatchHandler,
        *,
        batch_size: int | None = None,
        batch_wait_seconds: float | None = None,
        make_consumer: Callable[[], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stop_timeout_seconds: float = 30.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic(TopicName.PREDICTION_REQUESTS)
        self.group_id = settings.prediction_workers_group
        self._handle_batch = handle_batch
        self._batch_size = batch_size or settings.prediction_batch_size
        self._batch_wait = (
            batch_wait_seconds
            if batch_wait_seconds is not None
            else settings.prediction_batch_wait_seconds
        )
        self._make_consumer = make_consumer or self._default_consumer
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._stop_timeout = stop_timeout_seconds
        self._retry_seconds = retry_seconds
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.batches = 0
        self.records = 0
        self.failed_batches = 0
        self.commits = 0

    def _default_consumer(self) -> AIOKafkaConsumer:
        settings = self.settings
        return kafka_clients.consumer(
            settings,
            self.topic,
            group_id=self.group_id,
            group_instance_id=settings.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._batch_size,
            session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_seconds * 1000),
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the consumer and the batch loop. Idempotent; a failed start raises and leaves
        nothing running (the caller retries, see :meth:`run_until_stopped`)."""
        if self._task is not None:
            return
        self._stopping.clear()
        consumer = self._make_consumer()
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        if self._stopping.is_set():  # stop() came while the consumer was joining
            await consumer.stop()
            return
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="prediction-requests")

    async def run_until_stopped(self) -> None:
        """Start, retrying while the broker is unreachable (a worker must not crash-loop on a
        broker that is down at start-up); return once started or stopped."""
        while not self._stopping.is_set():
            try:
                await self.start()
            except KafkaError as error:
                log.warning("prediction request consumer cannot reach the broker (%s)", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=_START_RETRY_SECONDS)
            else:
                log.info("prediction workers consuming %s as %s", self.topic, self.group_id)
                return

    async def stop(self) -> None:
        """Let the batch in progress finish (up to ``stop_timeout_seconds``), commit it, leave
        the group. Idempotent. A batch cut off by the timeout is re-delivered to the next owner."""
        self._stopping.set()
        task, self._task = self._task, None
        consumer, self._consumer = self._consumer, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=self._stop_timeout)
            except TimeoutError:
                log.warning("a prediction batch did not finish within %.0f s", self._stop_timeout)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if consumer is not None:
            await consumer.stop()

    # --- the loop -----------------------------------------------------------------------

    async def _run(self, consumer: Any) -> None:
        while not self._stopping.is_set():
            try:
                records = await self._next_batch(consumer)
                if records:
                    await self._process(consumer, records)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let one bad moment (a broker hiccup) end the loop; _process has put
                # the batch back, so it is read again.
                log.exception("prediction request consumer: step failed; continuing")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._retry_seconds)

    async def _next_batch(self, consumer: Any) -> list[Any]:
        """Up to ``batch_size`` records, waiting at most ``batch_wait`` after the first one."""
        records: list[Any] = []
        deadline: float | None = None
        while len(records) < self._batch_size:
            if deadline is None:
                wait = _IDLE_POLL_SECONDS
            else:
                wait = deadline - self._monotonic()
                if wait <= 0:
                    break
            fetched: dict[Any, list[Any]] = await consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=self._batch_size - len(records)
            )
            for partition_records in fetched.values():
                records.extend(partition_records)
            if not records:
                return records  # idle: let the loop look at the stop flag
            if self._window_passed(records) and await self._caught_up(consumer):
                # Nothing more is on the topic and these were published longer than the window
                # ago (a backlog read after a restart): the window is for requests still being
                # published, waiting would only delay these.
                break
            if deadline is None:
                deadline = self._monotonic() + self._batch_wait
        return records

    def _window_passed(self, records: list[Any]) -> bool:
        """Was the oldest of ``records`` published (record timestamp) a whole window ago?"""
        oldest_seconds: float = min(record.timestamp for record in records) / 1000
        return self._wall_clock() - oldest_seconds >= self._batch_wait

    @staticmethod
    async def _caught_up(consumer: Any) -> bool:
        """Has this consumer read every owned partition up to its end as of its last fetch?

        The end is the last stable offset (the consumer reads committed records only); a
        partition whose end is not known yet counts as not caught up, so the window is waited.
        """
        owned = consumer.assignment()
        if not owned:
            return False
        for tp in owned:
            end = consumer.last_stable_offset(tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True

    async def _process(self, consumer: Any, records: list[Any]) -> None:
        items = [
            (
                record.value or b"",
                Origin.of(record),
            )
            for record in records
        ]
        first: dict[TopicPartition, int] = {}
        after_last: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first.setdefault(tp, record.offset)
            after_last[tp] = record.offset + 1
        try:
            await self._handle_batch(items)
        except Exception:
            self.failed_batches += 1
            self._rewind(consumer, first)
            raise
        self.batches += 1
        self.records += len(records)
        await self._commit(consumer, after_last)

    @staticmethod
    def _rewind(consumer: Any, first: dict[TopicPartition, int]) -> None:
        """Read the failed batch again (where this consumer still owns the partition)."""
        assignment = consumer.assignment()
        for tp, offset in first.items():
            if tp in assignment:
                consumer.seek(tp, offset)

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        owned = {tp: o for tp, o in offsets.items() if tp in consumer.assignment()}
        if not owned:
            return
        try:
            await consumer.commit(owned)
        except KafkaError as error:
            # A rebalance took the partitions: their new owner reads the batch again, and the
            # predictions' identities make that harmless.
            log.warning("request offsets not committed (%s); the batch will be re-read", error)
            return
        self.commits += 1
