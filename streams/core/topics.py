"""The topic catalog (docs/contract.md#topics): every topic declared once, created when missing."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from phaseflow.streams.core import kafka_clients, topic_names
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

#: The catalog's names (defined in phaseflow.streams.core.topic_names, which light clients import
#: alone).
TopicName = topic_names.TopicName


def _ms(delta: timedelta) -> str:
    return str(int(delta.total_seconds() * 1000))


@dataclass(frozen=True)
class TopicSpec:
    """How one catalog topic is keyed and kept."""

    name: TopicName
    key: str
    value: str
    compacted: bool = False
    retention: timedelta | None = None
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Topic-level configs set explicitly, so every broker reports them the same way."""
        config = {"cleanup.policy": "compact" if self.compacted else "delete"}
        # -1 means "keep forever"; set explicitly because some brokers (Tansu) only report
        # configs that were set, and clients that read retention.ms then fail.
        config["retention.ms"] = _ms(self.retention) if self.retention else "-1"
        if self.compacted:
            # Compact promptly so a key's superseded values do not linger for a week.
            config["min.cleanable.dirty.ratio"] = "0.1"
            config["segment.ms"] = _ms(timedelta(hours=1))
        config.update(self.extra_config)
        return config


CATALOG: tuple[TopicSpec, ...] = (
    # Internal: the prediction coordinator's commands (start, complete, check) and the workers'
    # per-player "done" records, keyed by game_date so one agent applies a date's changes in
    # order on the partition that owns its batch state (agents/predictions/messages.py).
    TopicSpec(
        TopicName.PREDICTION_PROGRESS,
        key="game_date",
        value="CoordinatorCommand | PlayerDone (internal)",
        retention=timedelta(days=7),
    ),
    # Internal: the readiness timer's "look at this date now", keyed by game_date so it lands on
    # the partition that owns the date (same partition count as the completions topic).
    TopicSpec(
        TopicName.READINESS_TICKS,
        key="game_date",
        value="ReadinessTick (internal)",
        retention=timedelta(days=1),
    ),
    # The broker stamps each completion with its own clock when it appends it: the readiness
    # agent measures deadlines from that receive time, never from a publisher's clock.
    TopicSpec(
        TopicName.PHASE_COMPLETIONS,
        key="game_date",
        value="PhaseCompletion",
        retention=timedelta(days=14),
        extra_config={"message.timestamp.type": "LogAppendTime"},
    ),
    TopicSpec(
        TopicName.PHASE_TRIGGERS,
        key="{game_date}:{phase}",
        value="PhaseTrigger",
        compacted=True,
    ),
    TopicSpec(
        TopicName.RERUN_REQUESTS,
        key="{game_date}:{phase}:{processor}",
        value="RerunRequest",
        retention=timedelta(days=7),
    ),
    TopicSpec(
        TopicName.PREDICTION_REQUESTS,
        key="{game_date}:{player_lookup}",
        value="PredictionRequest",
        retention=timedelta(days=7),
    ),
    TopicSpec(
        TopicName.PREDICTIONS,
        key="{game_date}:{player_lookup}:{system_id}:{line}",
        value="Prediction",
        compacted=True,
    ),
    TopicSpec(
        TopicName.ALERTS,
        key="{kind}:{subject}",
        value="Alert",
        retention=timedelta(days=7),
    ),
    TopicSpec(
        TopicName.DEAD_LETTERS,
        key="original key",
        value="DeadLetter",
        retention=timedelta(days=30),
    ),
    # Internal: the replay ledger of ``phaseflow dlq replay`` (streams/dlq.py), one record per
    # replayed original record, so a second replay of the same letters does nothing.
    TopicSpec(
        TopicName.DEAD_LETTER_REPLAYS,
        key="{source_topic}:{partition}:{offset}",
        value="ReplayRecord (internal)",
        compacted=True,
    ),
    TopicSpec(
        TopicName.AUDIT,
        key="key_id",
        value="AuditRecord",
        retention=timedelta(days=90),
    ),
)


def spec(name: TopicName) -> TopicSpec:
    """The catalog entry of ``name``."""
    return next(entry for entry in CATALOG if entry.name == name)


async def ensure_topics(settings: Settings, *, timeout_seconds: float = 30.0) -> list[str]:
    """Create every catalog topic that is missing; return the names created.

    Existing topics are left alone (their partition count is part of the data layout and is
    never changed behind an operator's back).
    """
    admin = await kafka_clients.started(
        kafka_clients.admin(settings, request_timeout_ms=int(timeout_seconds * 1000))
    )
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(entry.name),
                num_partitions=settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication_factor,
                topic_configs=entry.config(),
            )
            for entry in CATALOG
            if settings.topic(entry.name) not in existing
        ]
        created: list[str] = []
        for new_topic in wanted:
            # One request per topic: a concurrent creator (another worker) makes one fail
            # with TopicAlreadyExists, which must not abort the rest.
            try:
                await admin.create_topics([new_topic], timeout_ms=int(timeout_seconds * 1000))
            except TopicAlreadyExistsError:
                continue
            created.append(new_topic.name)
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


def committed_reader(
    settings: Settings, *topics: TopicName, offset_reset: str = "earliest"
) -> AIOKafkaConsumer:
    """A consumer of catalog topics without a group (no join wait, nothing committed) that sees
    only committed records: without a group_id aiokafka assigns itself every partition, and
    read_committed hides records of transactions a worker aborted (or died in)."""
    return kafka_clients.consumer(
        settings,
        *(settings.topic(topic) for topic in topics),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        isolation_level="read_committed",
    )


class CommittedReader:
    """A :func:`committed_reader` built when started, not before: a reader made and never
    started (a command that fails before it reads) holds no Kafka client to leak. ``stop()``
    is idempotent; a stopped reader can be started again."""

    def __init__(
        self, settings: Settings, *topics: TopicName, offset_reset: str = "earliest"
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._offset_reset = offset_reset
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> AIOKafkaConsumer:
        """The consumer, started (a failed start closes it: kafka_clients.started)."""
        if self._consumer is None:
            consumer = committed_reader(
                self._settings, *self._topics, offset_reset=self._offset_reset
            )
            await kafka_clients.started(consumer)
            self._consumer = consumer
        return self._consumer

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the reader is not started (use it with `async with`)")
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def until_assigned(consumer: AIOKafkaConsumer, topics: set[str], deadline: float) -> None:
    """Wait until ``consumer`` (a :func:`committed_reader`, which assigns itself every partition
    once it has the topics' metadata) holds partitions of every one of ``topics``; TimeoutError
    naming them after ``deadline`` (``time.monotonic()``)."""
    while {tp.topic for tp in consumer.assignment()} != topics:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partitions of {', '.join(sorted(topics))} (do they exist?)")
        await asyncio.sleep(0.1)


class TopicFollower(AsyncService):
    """Follows catalog topics from their beginning without a consumer group (see
    :func:`committed_reader`), so every worker sees every partition and nothing is committed.

    ``poll()`` hands what arrived since the last call to :meth:`observe_record`; the first call
    starts the consumer. Subclasses keep whatever view of the records they need.
    """

    def __init__(
        self, settings: Settings, *topics: TopicName, max_batches: int, max_records: int
    ) -> None:
        self._max_batches = max_batches
        self._max_records = max_records
        # Each poll while the broker is down tries again: a failed start closes its consumer
        # (CommittedReader via kafka_clients.started), so no attempt leaks one.
        self._reader = CommittedReader(settings, *topics)

    async def start(self) -> None:
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()

    async def poll(self) -> None:
        """Read what is there now: stops at the first empty fetch or after ``max_batches``
        fetches, so one call never runs for long."""
        consumer = await self._reader.start()
        for _ in range(self._max_batches):
            batches = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
            if not batches:
                return
            for records in batches.values():
                for record in records:
                    self.observe_record(record)

    @abstractmethod
    def observe_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Account for one record of a followed topic."""
