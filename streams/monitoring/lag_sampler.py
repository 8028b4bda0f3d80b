"""Samples consumer lag from a real broker with aiokafka: committed, log-end, lag, age.

Per group, per partition with a committed offset:

* ``committed``: the group's committed offset (``OffsetFetch``). The admin call for *all* of a
  group's offsets works on Apache Kafka; Tansu 0.6 answers it with a response aiokafka cannot
  decode and drops the connection, while ``OffsetFetch`` with *explicit* partitions works on
  both. So the sampler asks for all offsets first and, after a failure where the explicit
  request then works, switches for good to explicit partitions: every partition of every
  non-internal topic in the cluster metadata (a failure of both is the broker being away,
  which changes nothing).
* ``end``: the log-end offset (high watermark), the number Kafka's own
  ``kafka-consumer-groups --describe`` shows as LOG-END-OFFSET; ``raw_lag = end - committed``
  is its LAG. It is the larger of ``ListOffsets(latest)`` and the high watermark of the probe's
  fetch (below): on Apache Kafka the two agree; Tansu 0.6 answers ListOffsets with the last
  *batch's* base offset + 1 (ten records sent as one batch: 1), while its fetch responses carry
  the right high watermark.
* ``lag``: the *effective* lag. With transactions, the log ends with a commit marker that no
  consumer ever returns, and a consumer that commits "last processed + 1" sits one below the
  end forever (aborted records do the same). A read_committed probe seeks to the committed
  offset: if it finds no visible record and its position passes the end, everything left is
  markers or aborted records and the effective lag is 0. Otherwise it equals ``raw_lag``.
* ``lag_seconds``: now minus the timestamp of the record at the committed offset (the oldest
  unconsumed one, from the same probe); 0 when the effective lag is 0; ``None`` when no visible
  record could be read (an open transaction holds it back, or the probe timed out).
* ``committed_at``: when the group last committed the partition, from ``__consumer_offsets``
  (:mod:`phaseflow.streams.monitoring.commit_times`), read up to its end before the offsets
  are fetched. If the fetched offset is not the one the log showed, the group committed in
  between, so the time is "now". ``None`` when that topic cannot be read.

Partitions of a group *without* a committed offset are sampled too (``no_commit``): those
assigned to the group's current members (``DescribeGroups``) and the other partitions of the
topics the group has committed offsets for. Their ``committed`` is the log-start offset and
their lag the whole log from there (what a consumer with ``auto.offset.reset=earliest`` would
read; with ``latest`` it would skip it). Kafka's tool shows ``-`` for them.
The partitions a Faust app keeps for itself (its changelogs and leader topic, assigned to its
members but never committed) are left out: "no commit" there is not lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.clock import Clock, SystemClock
from phaseflow.streams.core.held_records import HeldRecords, is_undecodable_answer
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.monitoring.commit_times import CommitTimes
from phaseflow.streams.monitoring.lag_status import LagSample, Rewind

log = logging.getLogger(__name__)

# Probe fetches need one record per partition; small fetches keep a probe of a partition that
# is far behind from pulling megabytes. The broker still returns at least one whole batch.
_PROBE_FETCH_BYTES = 64 * 1024
_PROBE_POLL_MS = 100
_DESCRIBE_ATTEMPTS = 3


@dataclass(frozen=True)
class PartitionLag:
    """One sampled (group, topic, partition)."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag: int  # effective: 0 when only transaction markers / aborted records remain
    raw_lag: int  # end - committed, as kafka-consumer-groups shows it
    lag_seconds: float | None
    at: datetime
    committed_at: datetime | None = None  # the group's last commit of this partition
    # No committed offset: ``committed`` is the log-start offset, ``lag`` the log from there.
    no_commit: bool = False
    # The last backwards commit in __consumer_offsets (an offset reset), if any.
    rewind: Rewind | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.group, self.topic, self.partition)

    def sample(self) -> LagSample:
        return LagSample(
            at=self.at,
            committed=self.committed,
            end=self.end,
            lag=self.lag,
            lag_seconds=self.lag_seconds,
            committed_at=self.committed_at,
            rewind=self.rewind,
        )


@dataclass(frozen=True)
class _Probe:
    """What a read_committed fetch from the committed offset found."""

    highwater: int | None  # from a fetch response of this round; None if none came in time
    markers_only: bool = False  # nothing visible between the committed offset and the end
    timestamp_ms: int | None = None  # of the first visible record, if one was read


class LagSampler(AsyncService):
    """Reads lag from the broker; ``start()``/``stop()`` or ``async with``."""

    def __init__(
        self,
        connection: kafka_clients.KafkaConnection,
        *,
        clock: Clock | None = None,
        request_timeout: float = 10.0,
        probe_timeout: float = 2.0,
        list_all_offsets: bool = True,
        client_options: Mapping[str, Any] | None = None,
        commit_times: bool = True,
    ) -> None:
        self._connection = connection
        self._clock = clock or SystemClock()
        self._timeout = request_timeout
        self._probe_timeout = probe_timeout
        # False after the all-offsets request failed and the explicit one worked (Tansu):
        # explicit partitions from then.
        self.list_all_offsets = list_all_offsets
        self._all_offsets_answered = False
        # False after DescribeGroups failed _DESCRIBE_ATTEMPTS rounds in a row: no member
        # assignments from then on.
        self.describe_groups = True
        self._describe_failures = 0
        self._options = dict(client_options or {})
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer, AIOKafkaConsumer] | None = None
        self.commit_times: CommitTimes | None = (
            CommitTimes(connection, timeout=request_timeout) if commit_times else None
        )

    def _make_clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer, AIOKafkaConsumer]:
        timeout_ms = int(self._timeout * 1000)
        admin = kafka_clients.admin(self._connection, request_timeout_ms=timeout_ms)
        # No group_id on either consumer: the monitor must never join or commit to a group.
        meta = kafka_clients.consumer(
            self._connection,
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
            **self._options,
        )
        probe = kafka_clients.consumer(
            self._connection,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",  # committed below the log start (retention): oldest
            max_partition_fetch_bytes=_PROBE_FETCH_BYTES,
            # A read past the last visible record is long-polled by the broker for this long;
            # the probe wants its answer now (it is paused between rounds, so no busy polling).
            fetch_max_wait_ms=_PROBE_POLL_MS,
            request_timeout_ms=timeout_ms,
            **self._options,
        )
        return admin, meta, probe

    async def start(self) -> None:
        """Connect; a stopped sampler may be started again."""
        if self._clients is not None:
            return
        admin, meta, probe = self._make_clients()
        try:
            for client in (admin, meta, probe):
                await client.start()
            if self.commit_times is not None:
                await self.commit_times.start()
        except BaseException:
            # All three, started or not: aiokafka leaves a client whose start failed (or that
            # never started) open, and a start is retried while the broker is down.
            await _close_all((probe.stop, meta.stop, admin.close), deadline=self._timeout)
            raise
        self._clients = (admin, meta, probe)

    async def stop(self) -> None:
        """Close every client. Idempotent."""
        clients, self._clients = self._clients, None
        if clients is not None:
            admin, meta, probe = clients
            closers = [probe.stop, meta.stop, admin.close]
            if self.commit_times is not None:
                closers.insert(0, self.commit_times.stop)
            await _close_all(closers, deadline=self._timeout)

    def _require(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer, AIOKafkaConsumer]:
        if self._clients is None:
            raise RuntimeError("LagSampler used before start()")
        return self._clients

    # -- sampling ----------------------------------------------------------------------------
    async def sample(self, groups: Sequence[str]) -> list[PartitionLag]:
        """One sample of every partition the ``groups`` have committed offsets for, and of
        their partitions without one (see the module docstring)."""
        if self.commit_times is not None:
            await self.commit_times.refresh()
        committed = {group: await self.committed(group) for group in groups}
        uncommitted = await self.uncommitted(committed)
        partitions = {tp for offsets in committed.values() for tp in offsets}
        partitions |= {tp for missing in uncommitted.values() for tp in missing}
        if not partitions:
            return []
        ends = await self.end_offsets(partitions)
        starts = await self.start_offsets({tp for tps in uncommitted.values() for tp in tps})
        wanted = {(tp, offset) for offsets in committed.values() for tp, offset in offsets.items()}
        probes = await self._probe_all(wanted)
        now = self._clock.now()
        rows: list[PartitionLag] = []
        for group, offsets in committed.items():
            for tp, offset in sorted(offsets.items()):
                probe = probes.get((tp, offset), _Probe(highwater=None))
                end = max(ends.get(tp, -1), -1 if probe.highwater is None else probe.highwater)
                if end < 0:
                    continue  # neither ListOffsets nor a fetch answered for it
                raw_lag = max(0, end - offset)
                lag, seconds = raw_lag, None
                if raw_lag == 0 or probe.markers_only:
                    lag, seconds = 0, 0.0
                elif probe.timestamp_ms is not None:
                    seconds = max(0.0, now.timestamp() - probe.timestamp_ms / 1000)
                rows.append(
                    PartitionLag(
                        rewind=self._rewind(group, tp),
                        committed_at=self._committed_at(group, tp, offset, now),
                        group=group,
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=offset,
                        end=end,
                        lag=lag,
                        raw_lag=raw_lag,
                        lag_seconds=seconds,
                        at=now,
                    )
                )
        for group, missing in uncommitted.items():
            for tp in sorted(missing):
                if tp not in ends or tp not in starts:
                    continue
                start, end = starts[tp], ends[tp]
                rows.append(
                    PartitionLag(
                        group=group,
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=start,
                        end=end,
                        lag=max(0, end - start),
                        raw_lag=max(0, end - start),
                        lag_seconds=None,
                        at=now,
                        no_commit=True,
                    )
                )
        return rows

    async def uncommitted(
        self, committed: Mapping[str, Mapping[TopicPartition, int]]
    ) -> dict[str, set[TopicPartition]]:
        """Per group, its partitions without a committed offset: those assigned to its current
        members, and the other partitions of the topics it committed offsets for."""
        assigned = await self._assignments(list(committed))
        topics = {tp.topic for offsets in committed.values() for tp in offsets}
        topics |= {tp.topic for tps in assigned.values() for tp in tps}
        by_topic: dict[str, list[TopicPartition]] = defaultdict(list)
        for tp in await self._partitions_of(sorted(topics)):
            by_topic[tp.topic].append(tp)
        # Only partitions that exist (a member may hold one of a topic deleted since).
        known = {tp for tps in by_topic.values() for tp in tps}
        missing: dict[str, set[TopicPartition]] = {}
        for group, offsets in committed.items():
            mine = set(assigned.get(group, set()))
            for topic in {tp.topic for tp in offsets}:
                mine.update(by_topic.get(topic, []))
            left = {tp for tp in (mine & known) - set(offsets) if not faust_internal(group, tp)}
            if left:
                missing[group] = left
        return missing

    async def _assignments(self, groups: Sequence[str]) -> dict[str, set[TopicPartition]]:
        """The partitions assigned to each group's current members (consumer protocol only);
        empty when the broker cannot describe groups."""
        if not groups or not self.describe_groups:
            return {}
        found: dict[str, set[TopicPartition]] = {}
        failed: Exception | None = None
        for group in groups:
            # One group per request: aiokafka 0.14 cannot decode Apache Kafka 4.1's answer to
            # a DescribeGroups of several groups (buffer underrun) and drops the connection.
            try:
                responses = await asyncio.wait_for(
                    self._require()[0].describe_consumer_groups([group]), self._timeout
                )
            except (KafkaError, TimeoutError) as error:
                failed = error
                continue
            for response in responses:
                for described in response.to_object()["groups"]:
                    found.setdefault(str(described["group"]), set()).update(_assigned(described))
        if failed is None or found:
            self._describe_failures = 0
            return found
        # A fresh broker may drop such requests while it loads its coordinators: give up only
        # when every group failed several rounds in a row (a broker without DescribeGroups).
        self._describe_failures += 1
        if self._describe_failures >= _DESCRIBE_ATTEMPTS:
            self.describe_groups = False
            log.warning(
                "describing consumer groups failed %d rounds in a row (%r); partitions "
                "without a commit are found from the committed topics only from now on",
                self._describe_failures,
                failed,
            )
        else:
            log.info("describing consumer groups failed (%r); retried next round", failed)
        return found

    async def _partitions_of(self, topics: Sequence[str]) -> list[TopicPartition]:
        if not topics:
            return []
        described: list[dict[str, Any]] = await asyncio.wait_for(
            self._require()[0].describe_topics(list(topics)), self._timeout
        )
        return [
            TopicPartition(str(topic["topic"]), int(p["partition"]))
            for topic in described
            if not topic.get("error_code")
            for p in topic["partitions"]
        ]

    async def start_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The log-start offsets (the oldest record kept) of ``partitions``."""
        wanted = sorted(partitions)
        if not wanted:
            return {}
        starts: dict[TopicPartition, int] = await asyncio.wait_for(
            self._require()[1].beginning_offsets(wanted), self._timeout
        )
        return dict(starts)

    async def list_groups(self) -> list[str]:
        """Every consumer group the cluster knows: ``ListGroups``, plus the groups that have
        commits in ``__consumer_offsets`` (when readable), which includes groups that only
        commit offsets and never join."""
        listed = await asyncio.wait_for(self._require()[0].list_consumer_groups(), self._timeout)
        names = {str(entry[0]) for entry in listed}
        if self.commit_times is not None and self.commit_times.available:
            names |= self.commit_times.groups()
        return sorted(names)

    def _rewind(self, group: str, tp: TopicPartition) -> Rewind | None:
        if self.commit_times is None or not self.commit_times.available:
            return None
        return self.commit_times.rewind(group, tp.topic, tp.partition)

    def _committed_at(
        self, group: str, tp: TopicPartition, offset: int, now: datetime
    ) -> datetime | None:
        if self.commit_times is None or not self.commit_times.available:
            return None
        commit = self.commit_times.latest(group, tp.topic, tp.partition)
        if commit is None:
            return None
        # A different offset was committed after the log was read: just now, as far as we know.
        return commit.committed_at if commit.offset == offset else now

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed offsets (partitions without one are left out)."""
        if self.list_all_offsets:
            # Until one all-offsets answer was read, aiokafka's traceback for an answer it
            # cannot decode (Tansu's) is held back: the warning below says it in one line.
            undecodable = HeldRecords(
                ("aiokafka.conn",), is_undecodable_answer, enabled=not self._all_offsets_answered
            )
            try:
                with undecodable:
                    offsets = await asyncio.wait_for(
                        self._require()[0].list_consumer_group_offsets(group), self._timeout
                    )
            except (KafkaError, TimeoutError) as error:
                # The broker may just be away: switch only if the explicit request works.
                explicit = await self._committed_in_partitions(group)
                reason = str(error) or type(error).__name__  # aiokafka's errors name their type
                if undecodable.held:
                    reason += "; aiokafka could not decode the broker's answer"
                log.warning(
                    "listing all offsets of group %s failed (%s) where asking for explicit "
                    "partitions works; asking for explicit partitions from now on (Tansu does "
                    "not answer the all-offsets request)",
                    group,
                    reason,
                )
                self.list_all_offsets = False
                return explicit
            self._all_offsets_answered = True
            return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return await self._committed_in_partitions(group)

    async def _committed_in_partitions(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed offsets, asked for every partition of the cluster by name."""
        partitions = await self._all_partitions()
        if not partitions:
            return {}
        offsets = await asyncio.wait_for(
            self._require()[0].list_consumer_group_offsets(group, partitions=partitions),
            self._timeout,
        )
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = sorted(partitions)
        ends: dict[TopicPartition, int] = await asyncio.wait_for(
            self._require()[1].end_offsets(wanted), self._timeout
        )
        return dict(ends)

    async def _all_partitions(self) -> list[TopicPartition]:
        # The admin's metadata, not the consumer's: consumer.topics() does not refresh the
        # cache that partitions_for_topic() reads, so it knows names but no partitions.
        described: list[dict[str, Any]] = await asyncio.wait_for(
            self._require()[0].describe_topics(), self._timeout
        )
        found: list[TopicPartition] = []
        for topic in described:
            name = str(topic["topic"])
            if topic.get("is_internal") or name.startswith("__") or topic.get("error_code"):
                continue  # __consumer_offsets, __transaction_state; topics being deleted
            found.extend(TopicPartition(name, int(p["partition"])) for p in topic["partitions"])
        return sorted(found)

    async def _probe_all(
        self, wanted: set[tuple[TopicPartition, int]]
    ) -> dict[tuple[TopicPartition, int], _Probe]:
        # Groups sharing a partition at different offsets need separate seeks: one round each.
        rounds: list[dict[TopicPartition, int]] = []
        by_tp: dict[TopicPartition, list[int]] = defaultdict(list)
        for tp, offset in sorted(wanted):
            by_tp[tp].append(offset)
        for tp, offsets in by_tp.items():
            for index, offset in enumerate(offsets):
                if index == len(rounds):
                    rounds.append({})
                rounds[index][tp] = offset
        # One assignment for every round, all paused: reassigning per round (every sample,
        # whenever two groups share a partition) reset the fetcher and logged aiokafka's
        # subscription table twice a sample; a round resumes only its own partitions instead.
        consumer = self._require()[2]
        if by_tp and consumer.assignment() != set(by_tp):
            consumer.assign(sorted(by_tp))
            consumer.pause(*by_tp)
        results: dict[tuple[TopicPartition, int], _Probe] = {}
        for seeks in rounds:
            found = await self._probe_round(seeks)
            results.update({(tp, seeks[tp]): probe for tp, probe in found.items()})
        return results

    async def _probe_round(
        self, seeks: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, _Probe]:
        """A read_committed fetch from each committed offset (its partitions assigned by
        ``_probe_all``): high watermark, first record."""
        consumer = self._require()[2]
        consumer.resume(*seeks)
        try:
            for tp, offset in seeks.items():
                consumer.seek(tp, offset)
            # Fetch responses stamp partitions with the wall clock in ms: older ones are stale.
            since_ms = int(time.time() * 1000)
            first: dict[TopicPartition, int] = {}  # timestamp of the first record >= committed
            found: dict[TopicPartition, _Probe] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._probe_timeout
            pending = set(seeks)
            while pending and loop.time() < deadline:
                batches = await consumer.getmany(*pending, timeout_ms=_PROBE_POLL_MS)
                for tp, records in batches.items():
                    visible = [record for record in records if record.offset >= seeks[tp]]
                    if visible and tp not in first:
                        first[tp] = min(visible, key=lambda record: record.offset).timestamp
                for tp in list(pending):
                    probe = await self._resolve(consumer, tp, since_ms, first.get(tp))
                    if probe is not None:
                        found[tp] = probe
                        pending.discard(tp)
            # Still pending (a slow broker): ListOffsets' end and no age.
            return found
        finally:
            # Stop the background fetcher from prefetching for partitions nobody reads. Pause,
            # not unsubscribe(): aiokafka 0.14's fetch routine swallows a cancel that arrives
            # while it is dropping an old assignment, so a stop() right after unsubscribe()
            # hung for up to the 5-minute metadata refresh (seen on Apache Kafka 4.1).
            consumer.pause(*seeks)

    @staticmethod
    async def _resolve(
        consumer: AIOKafkaConsumer, tp: TopicPartition, since_ms: int, first_ms: int | None
    ) -> _Probe | None:
        """What the probe knows about ``tp`` so far, or None to keep waiting."""
        polled = consumer.last_poll_timestamp(tp)
        highwater = consumer.highwater(tp)
        if polled is None or polled < since_ms or highwater is None:
            return None  # no fetch response of this round yet
        if first_ms is not None:
            return _Probe(highwater=highwater, timestamp_ms=first_ms)
        position = await consumer.position(tp)
        if position >= highwater:
            # No record, yet the position reached the end: whatever lies between the committed
            # offset and the end is control markers or aborted records (or nothing).
            return _Probe(highwater=highwater, markers_only=True)
        stable = consumer.last_stable_offset(tp)
        if stable is not None and 0 <= stable <= position:
            # Stopped at the last stable offset: an open transaction holds the rest back. That
            # lag is real; its age cannot be read under read_committed.
            return _Probe(highwater=highwater)
        return None


def _assigned(described: Mapping[str, Any]) -> set[TopicPartition]:
    """The partitions assigned to the members of one described group (consumer protocol)."""
    if described["error_code"] or described["protocol_type"] != "consumer":
        return set()
    partitions: set[TopicPartition] = set()
    for member in described["members"]:
        raw = member["member_assignment"]
        if raw:
            partitions.update(ConsumerProtocolMemberAssignment.decode(raw).partitions())
    return partitions


async def _close_all(
    closers: Iterable[Callable[[], Awaitable[None]]], *, deadline: float = 10.0
) -> None:
    # Each close is attempted, so one failure does not leak the other clients; the deadline
    # keeps a client that never finishes closing (see _probe_round) from blocking shutdown.
    for close in closers:
        try:
            await asyncio.wait_for(close(), deadline)
        except Exception:  # best effort on shutdown, logged
            log.warning("closing a lag-sampler client failed", exc_info=True)


def faust_internal(group: str, tp: TopicPartition) -> bool:
    """Whether ``tp`` is a topic a Faust app named ``group`` keeps for itself (its tables'
    changelogs, its leader topic): its members are assigned those partitions and read them for
    recovery, but never commit them, so "no commit" there is not lag."""
    topic = str(tp.topic)
    return topic.startswith(f"{group}-") and topic.endswith(("-changelog", "-__assignor-__leader"))
