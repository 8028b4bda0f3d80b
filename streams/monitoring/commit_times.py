"""When each group last committed each partition, read from ``__consumer_offsets``.

``OffsetFetch`` (what the admin client's ``list_consumer_group_offsets`` sends) returns the
committed offset and its metadata, never *when* it was committed; the group coordinator keeps
that only in its log, ``__consumer_offsets``. This module reads that log with a plain consumer
from the factory (no group: it never joins or commits), ``read_committed`` so a transactional
offset commit counts only once its transaction committed, as the coordinator applies it.

Record format (Kafka's ``OffsetCommitKey``/``OffsetCommitValue``, big-endian):

* key: ``int16`` record type, 0 (legacy) or 1 = offset commit, then ``group`` and ``topic``
  (``int16`` length + UTF-8) and ``partition`` (``int32``). Other types (group metadata,
  KIP-848 consumer-group records, share groups) are skipped.
* value (``None`` = the offset was deleted): ``int16`` version, ``offset`` (``int64``);
  v3+ ``leaderEpoch`` (``int32``); ``metadata`` (string: ``int16`` length up to v3, compact
  ``uvarint`` length + 1 from v4); ``commitTimestamp`` (``int64`` ms); v1 an expire
  timestamp and v4 tagged fields follow, which are not needed.

The alternative, the timestamp of the record at the committed offset, is what the sampler
already reads for ``LAG_S``; it tells when the lag began, not whether the consumer still
commits, so it cannot tell a slow consumer (committing, far behind) from a dead one. See
docs/lag-monitor.md.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.monitoring.lag_status import Rewind

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
_OFFSET_COMMIT_TYPES = frozenset({0, 1})
_POLL_MS = 200


@dataclass(frozen=True)
class Commit:
    """One offset commit as the coordinator logged it."""

    group: str
    topic: str
    partition: int
    offset: int | None  # None: the committed offset was deleted (tombstone)
    committed_at: datetime | None  # None for a tombstone


class _TopicMissingError(RuntimeError):
    """``__consumer_offsets`` does not exist yet: no group has used a coordinator so far."""


#: Kafka's UNKNOWN_TOPIC_OR_PARTITION.
_UNKNOWN_TOPIC = 3


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self._data, self._at)
        self._at += struct.calcsize(fmt)
        return values[0]

    def skip(self, size: int) -> None:
        if size < 0 or self._at + size > len(self._data):
            raise struct.error(f"string of {size} bytes past the end")
        self._at += size

    def string(self) -> str:
        size = self.take(">h")
        if size < 0 or self._at + size > len(self._data):
            raise struct.error(f"string of {size} bytes past the end")
        text = self._data[self._at : self._at + size].decode()
        self._at += size
        return text

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(">B")
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return int(value)
            shift += 7


def parse_commit(key: bytes | None, value: bytes | None) -> Commit | None:
    """The offset commit in a ``__consumer_offsets`` record, or None for other record types.

    Raises ``struct.error`` or ``UnicodeDecodeError`` for a malformed offset-commit record.
    """
    if key is None or len(key) < 2:
        return None
    keys = _Reader(key)
    if keys.take(">h") not in _OFFSET_COMMIT_TYPES:
        return None
    group, topic, partition = keys.string(), keys.string(), keys.take(">i")
    if value is None:
        return Commit(group, topic, partition, None, None)
    values = _Reader(value)
    version = values.take(">h")
    offset = values.take(">q")
    if version >= 3:  # leaderEpoch appears in v3
        values.take(">i")
    if version >= 4:  # v4 is flexible: compact string
        values.skip(values.uvarint() - 1)
    else:
        values.skip(values.take(">h"))
    millis = values.take(">q")
    return Commit(group, topic, partition, offset, datetime.fromtimestamp(millis / 1000, tz=UTC))


class CommitTimes(AsyncService):
    """The latest commit per (group, topic, partition), brought up to date by :meth:`refresh`.

    ``available`` is False (and ``error`` says why) when the topic cannot be read, e.g. no
    READ permission on ``__consumer_offsets`` or a broker without one (Tansu): the monitor then
    falls back to its own observation for STOP, and says so.
    """

    def __init__(self, connection: kafka_clients.KafkaConnection, *, timeout: float = 10.0) -> None:
        self._connection = connection
        self._timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._latest: dict[tuple[str, str, int], Commit] = {}
        self._rewinds: dict[tuple[str, str, int], Rewind] = {}
        self.error: str | None = None
        # A fresh cluster has no __consumer_offsets until a group first commits or joins: no
        # commits to know yet. Looked for again at every refresh, not an error.
        self._topic_missing = False

    @property
    def available(self) -> bool:
        return self._consumer is not None and self.error is None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = await kafka_clients.started(
            kafka_clients.consumer(
                self._connection,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                exclude_internal_topics=False,
                request_timeout_ms=int(self._timeout * 1000),
            )
        )
        self._consumer = consumer
        await self._assign(consumer)
        if self.error is not None:
            log.warning("commit times unavailable, STOP falls back to observation: %s", self.error)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        try:
            partitions = await asyncio.wait_for(self._partitions(), self._timeout)
        except _TopicMissingError:
            self._topic_missing = True
            return
        except Exception as error:  # noqa: BLE001 - reported through .error, not fatal
            partitions = []
            self.error = f"cannot list {OFFSETS_TOPIC} ({error!r})"
        self._topic_missing = False
        if partitions:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        elif self.error is None:
            self.error = f"{OFFSETS_TOPIC} is not visible to this client (no READ/DESCRIBE ACL?)"

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        # The admin's metadata: a consumer's topics() does not fill the cache that its
        # partitions_for_topic() reads.
        admin = await kafka_clients.started(
            kafka_clients.admin(self._connection, request_timeout_ms=int(self._timeout * 1000))
        )
        try:
            described: list[dict[str, Any]] = await admin.describe_topics([OFFSETS_TOPIC])
        finally:
            await admin.close()
        found: list[TopicPartition] = []
        for topic in described:
            if topic.get("error_code") == _UNKNOWN_TOPIC:
                raise _TopicMissingError(OFFSETS_TOPIC)
            if topic.get("error_code"):
                raise RuntimeError(f"describing {OFFSETS_TOPIC}: error code {topic['error_code']}")
            found.extend(
                TopicPartition(OFFSETS_TOPIC, int(p["partition"])) for p in topic["partitions"]
            )
        return sorted(found)

    async def refresh(self) -> None:
        """Read ``__consumer_offsets`` up to its end as of now (bounded by the timeout)."""
        consumer = self._consumer
        if consumer is None or self.error is not None:
            return
        if self._topic_missing:
            await self._assign(consumer)
            if self.error is not None:
                log.warning("commit times unavailable: %s", self.error)
            if self._topic_missing or self.error is not None:
                return
        assigned = consumer.assignment()
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(list(assigned)), self._timeout)
        except Exception as error:  # noqa: BLE001 - one failed round; stale times are kept
            log.warning("reading the end of %s failed: %r", OFFSETS_TOPIC, error)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        pending = {tp for tp in assigned if ends.get(tp, 0) > 0}
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
            for records in batches.values():
                for record in records:
                    self.apply_record(record.key, record.value)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if pending:
            log.warning(
                "%s: %d partition(s) not read to the end within %.0f s; commit times may be "
                "stale this round",
                OFFSETS_TOPIC,
                len(pending),
                self._timeout,
            )

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """Take one record of the log into account (in log order)."""
        try:
            commit = parse_commit(key, value)
        except (struct.error, UnicodeDecodeError) as error:
            log.warning("skipping a malformed %s record: %r", OFFSETS_TOPIC, error)
            return
        if commit is None:
            return
        slot = (commit.group, commit.topic, commit.partition)
        if commit.offset is None:
            self._latest.pop(slot, None)
            return
        previous = self._latest.get(slot)
        if (
            previous is not None
            and previous.offset is not None
            and commit.committed_at is not None
            and commit.offset < previous.offset
        ):
            # Every commit is in the log, so a reset seen here is seen even when the group
            # replays so fast that no sample of the committed offset catches the lower value.
            self._rewinds[slot] = Rewind(commit.committed_at, previous.offset, commit.offset)
        self._latest[slot] = commit

    def rewind(self, group: str, topic: str, partition: int) -> Rewind | None:
        """The last backwards commit of ``group`` for the partition in the log, if any."""
        return self._rewinds.get((group, topic, partition))

    def latest(self, group: str, topic: str, partition: int) -> Commit | None:
        """The last commit of ``group`` for the partition, if the log holds one."""
        return self._latest.get((group, topic, partition))

    def groups(self) -> set[str]:
        return {group for group, _, _ in self._latest}
