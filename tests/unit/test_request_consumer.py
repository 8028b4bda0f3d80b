"""The prediction request consumer's batching, commits, rewinds and shutdown (no broker).

The Kafka consumer is a scripted fake and the batch window runs on a fake monotonic clock that
an empty poll advances by the poll's timeout, so no test waits for real time to pass.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.streams.app import build_app
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.settings import Settings

SETTINGS = Settings(topic_prefix="pf", app_id="pf-app")
TOPIC = SETTINGS.topic("prediction-requests")
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # as aiokafka's ConsumerRecord
    timestamp: int = 0  # ms since the epoch, as aiokafka's: 0 is a backlog published long ago


def records(tp: TopicPartition, offsets: range) -> list[Record]:
    return [Record(tp.topic, tp.partition, o, b"k%d" % o, b"v%d" % o) for o in offsets]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """Hands out scripted polls (``None`` = an empty poll), honouring ``max_records``."""

    def __init__(self, polls: list[list[Record] | None], time: FakeTime) -> None:
        self.polls: deque[list[Record] | None] = deque(polls)
        self.time = time
        self.owned = {P0, P1}
        self.timeouts: list[int] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commit_errors: deque[Exception] = deque()
        self.delivered: list[Record] = []
        self.started = self.stopped = 0
        #: Each partition's end (last stable offset) as a fetch reports it; unknown if absent.
        self.ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        self.timeouts.append(timeout_ms)
        await asyncio.sleep(0)  # a real poll yields to the loop
        poll = self.polls.popleft() if self.polls else None
        if not poll:
            self.time.now += timeout_ms / 1000  # waited the whole timeout for nothing
            return {}
        taken, rest = poll[:max_records], poll[max_records:]
        if rest:
            self.polls.appendleft(rest)
        self.delivered += taken
        fetched: dict[TopicPartition, list[Record]] = {}
        for record in taken:
            fetched.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return fetched

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        offsets = [r.offset for r in self.delivered if (r.topic, r.partition) == tp]
        return max(offsets) + 1 if offsets else 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """The next polls deliver ``tp`` again from ``offset``."""
        self.seeks.append((tp, offset))
        again = [r for r in self.delivered if (r.topic, r.partition) == tp and r.offset >= offset]
        self.delivered = [r for r in self.delivered if r not in again]
        self.polls.appendleft(again)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_errors:
            raise self.commit_errors.popleft()
        self.commits.append(dict(offsets))


class Handler:
    """Records batches; ``fail`` raises once per entry; ``gate`` holds a batch until set."""

    def __init__(self, expected_records: int) -> None:
        self.batches: list[list[Origin]] = []
        self.expected = expected_records
        self.done = asyncio.Event()
        self.fail: deque[Exception] = deque()
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, items: Sequence[tuple[bytes, Origin]]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise self.fail.popleft()
        self.batches.append([origin for _, origin in items])
        if sum(map(len, self.batches)) >= self.expected:
            self.done.set()


def consumer_for(
    handler: Handler, fake: FakeConsumer, time: FakeTime, **options: float
) -> PredictionRequestConsumer:
    return PredictionRequestConsumer(
        SETTINGS,
        handler,
        batch_size=100,
        batch_wait_seconds=0.5,
        make_consumer=lambda: fake,
        monotonic=time,
        retry_seconds=0.01,
        **options,  # type: ignore[arg-type]
    )


async def test_batches_hold_at_most_batch_size_and_commit_the_next_offset_after_handling() -> None:
    time = FakeTime()
    polled = records(P0, range(150)) + records(P1, range(100))
    fake = FakeConsumer([polled[i : i + 60] for i in range(0, 250, 60)], time)
    handler = Handler(expected_records=250)
    async with consumer_for(handler, fake, time) as requests:
        await asyncio.wait_for(handler.done.wait(), 5)
    assert [len(batch) for batch in handler.batches] == [100, 100, 50]
    delivered = [(o.partition, o.offset) for batch in handler.batches for o in batch]
    assert delivered == [(r.partition, r.offset) for r in polled]  # in order, once each
    assert fake.commits == [{P0: 100}, {P0: 150, P1: 50}, {P1: 100}]
    assert (requests.batches, requests.records, requests.commits) == (3, 250, 3)
    assert handler.batches[0][0] == Origin(TOPIC, 0, 0, b"k0")
    assert fake.stopped == 1


async def test_a_short_batch_waits_at_most_the_batch_window_after_its_first_record() -> None:
    time = FakeTime()
    fake = FakeConsumer([None, records(P0, range(10)), None, None], time)
    handler = Handler(expected_records=10)
    async with consumer_for(handler, fake, time):
        await asyncio.wait_for(handler.done.wait(), 5)
    assert [len(batch) for batch in handler.batches] == [10]
    # Idle polls wait 500 ms; after the first record the remaining window (500 ms) is waited
    # once, then the batch goes out instead of waiting for more.
    assert fake.timeouts[:3] == [500, 500, 500]
    assert fake.commits[0] == {P0: 10}


async def test_a_batch_goes_out_without_the_window_once_every_partition_is_read_to_its_end() -> (
    None
):
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(30)) + records(P1, range(20)), None], time)
    fake.ends = {P0: 30, P1: 20}
    handler = Handler(expected_records=50)
    handler.gate = asyncio.Event()
    async with consumer_for(handler, fake, time):
        await asyncio.wait_for(handler.entered.wait(), 5)
        # Handed over after the one poll that found the backlog, with no time waited for more.
        assert (fake.timeouts, time.now) == ([500], 1000.0)
        handler.gate.set()
        await asyncio.wait_for(handler.done.wait(), 5)
    assert [len(batch) for batch in handler.batches] == [50]
    assert fake.commits[0] == {P0: 30, P1: 20}


async def test_requests_published_just_now_get_their_window_even_when_read_to_the_end() -> None:
    # The coordinator is still publishing the batch's requests: the consumer has read all there
    # is so far, but they are fresh, so the window is waited for the rest to join them.
    time = FakeTime()
    published_ms = 1_796_000_000_000
    fresh = [
        Record(P0.topic, P0.partition, o, b"k%d" % o, b"v%d" % o, timestamp=published_ms)
        for o in range(3)
    ]
    fake = FakeConsumer([fresh, None, None], time)
    fake.ends = {P0: 3, P1: 0}  # every owned partition read to its end
    handler = Handler(expected_records=3)
    consumer = PredictionRequestConsumer(
        SETTINGS,
        handler,
        batch_size=100,
        batch_wait_seconds=0.5,
        make_consumer=lambda: fake,
        monotonic=time,
        wall_clock=lambda: published_ms / 1000 + 0.1,
        retry_seconds=0.01,
    )
    handler.gate = asyncio.Event()
    async with consumer:
        await asyncio.wait_for(handler.entered.wait(), 5)
        # Handed over only after the poll that found them and one more for the window.
        assert fake.timeouts == [500, 500]
        handler.gate.set()
        await asyncio.wait_for(handler.done.wait(), 5)
    assert [len(batch) for batch in handler.batches] == [3]


async def test_a_partition_not_read_to_its_end_keeps_the_window_open() -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(30)), records(P1, range(5)), None, None], time)
    fake.ends = {P0: 30, P1: 10}  # P1 has 10 records, the batch so far holds 5 of them
    handler = Handler(expected_records=35)
    async with consumer_for(handler, fake, time):
        await asyncio.wait_for(handler.done.wait(), 5)
    assert [len(batch) for batch in handler.batches] == [35]
    assert fake.timeouts[:3] == [500, 500, 500]  # waited the window for the rest of P1


async def test_a_failed_batch_is_rewound_uncommitted_then_read_again() -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(5, 8)) + records(P1, range(3))], time)
    handler = Handler(expected_records=6)
    handler.fail.append(KafkaConnectionError("broker away"))
    async with consumer_for(handler, fake, time) as requests:
        await asyncio.wait_for(handler.done.wait(), 5)
    assert sorted(fake.seeks) == [(P0, 5), (P1, 0)]  # back to each partition's first record
    assert requests.failed_batches == 1
    assert sorted((o.partition, o.offset) for o in handler.batches[0]) == [
        (0, 5),
        (0, 6),
        (0, 7),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    assert fake.commits == [{P0: 8, P1: 3}]  # only after the batch was handled


async def test_a_rewind_skips_partitions_this_consumer_no_longer_owns() -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(2)) + records(P1, range(2))], time)
    fake.owned = {P1}  # P0 went to another worker during the batch
    handler = Handler(expected_records=2)
    handler.fail.append(RuntimeError("boom"))
    async with consumer_for(handler, fake, time):
        await asyncio.wait_for(handler.done.wait(), 5)
    assert fake.seeks == [(P1, 0)]
    assert [(o.partition, o.offset) for o in handler.batches[0]] == [(1, 0), (1, 1)]
    assert fake.commits == [{P1: 2}]  # P0 is its new owner's to read and commit


async def test_a_commit_refused_by_a_rebalance_leaves_the_batch_to_be_read_again() -> None:
    time = FakeTime()
    # The empty poll closes the first batch's window: two batches.
    fake = FakeConsumer([records(P0, range(4)), None, records(P0, range(4, 6))], time)
    fake.commit_errors.append(CommitFailedError("rebalanced"))
    handler = Handler(expected_records=6)
    async with consumer_for(handler, fake, time) as requests:
        await asyncio.wait_for(handler.done.wait(), 5)
    assert fake.commits == [{P0: 6}]
    assert requests.commits == 1
    assert requests.batches == 2


async def test_stop_lets_the_batch_in_progress_finish_and_commit() -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P1, range(7))], time)
    handler = Handler(expected_records=7)
    handler.gate = asyncio.Event()
    requests = consumer_for(handler, fake, time)
    await requests.start()
    await asyncio.wait_for(handler.entered.wait(), 5)
    stopping = asyncio.create_task(requests.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the batch
    handler.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert fake.commits == [{P1: 7}]
    assert fake.stopped == 1
    await requests.stop()  # idempotent
    assert fake.stopped == 1


async def test_stop_gives_up_on_a_batch_past_its_timeout_without_committing_it() -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(3))], time)
    handler = Handler(expected_records=3)
    handler.gate = asyncio.Event()  # never set: a batch stuck on its downstream
    requests = consumer_for(handler, fake, time, stop_timeout_seconds=0.05)
    await requests.start()
    await asyncio.wait_for(handler.entered.wait(), 5)
    await asyncio.wait_for(requests.stop(), 5)
    assert fake.commits == []  # the next owner reads the batch again
    assert fake.stopped == 1


async def test_run_until_stopped_retries_an_unreachable_broker_and_ends_on_stop() -> None:
    time = FakeTime()
    attempts: list[int] = []
    attempted = asyncio.Event()

    class Unreachable(FakeConsumer):
        async def start(self) -> None:
            attempts.append(1)
            attempted.set()
            raise KafkaConnectionError("no broker")

    requests = PredictionRequestConsumer(
        SETTINGS,
        Handler(expected_records=0),
        make_consumer=lambda: Unreachable([], time),
        monotonic=time,
    )
    running = asyncio.create_task(requests.run_until_stopped())
    await asyncio.wait_for(attempted.wait(), 5)
    await asyncio.sleep(0)
    assert not running.done()  # waiting to retry, not crashed
    await requests.stop()
    await asyncio.wait_for(running, 5)
    assert len(attempts) == 1


def test_the_workers_group_is_derived_from_the_app_id() -> None:
    assert SETTINGS.prediction_workers_group == "pf-app.prediction-workers"
    assert PredictionRequestConsumer(SETTINGS, Handler(0)).group_id == "pf-app.prediction-workers"


@pytest.mark.parametrize("batch_size", [1, 7])
async def test_batch_size_one_and_odd_sizes_split_a_poll_exactly(batch_size: int) -> None:
    time = FakeTime()
    fake = FakeConsumer([records(P0, range(15))], time)
    handler = Handler(expected_records=15)
    requests = PredictionRequestConsumer(
        SETTINGS, handler, batch_size=batch_size, make_consumer=lambda: fake, monotonic=time
    )
    async with requests:
        await asyncio.wait_for(handler.done.wait(), 5)
    sizes = [len(batch) for batch in handler.batches]
    assert all(size <= batch_size for size in sizes)
    assert sum(sizes) == 15
    assert fake.commits[-1] == {P0: 15}


async def test_on_shutdown_the_workers_stop_before_the_side_producer_they_publish_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = build_app(Settings(topic_prefix="pf", app_id="pf-app", data_dir=tmp_path))
    requests = ctx.components.prediction_requests
    assert isinstance(requests, PredictionRequestConsumer)
    assert requests in ctx.side_publisher_users
    assert requests.group_id == "pf-app.prediction-workers"
    stopped: list[str] = []

    async def stop_requests() -> None:
        stopped.append("prediction requests")

    async def stop_side_producer() -> None:
        stopped.append("side producer")

    monkeypatch.setattr(requests, "stop", stop_requests)
    monkeypatch.setattr(ctx.side_publisher, "stop", stop_side_producer)
    await ctx.app.on_before_shutdown.send()
    assert stopped == ["prediction requests", "side producer"]


async def test_a_stop_during_start_leaves_nothing_running() -> None:
    time = FakeTime()
    joining, release = asyncio.Event(), asyncio.Event()

    class SlowJoin(FakeConsumer):
        async def start(self) -> None:
            joining.set()
            await release.wait()  # the group join is slow
            await super().start()

    fake = SlowJoin([records(P0, range(3))], time)
    handler = Handler(expected_records=3)
    requests = consumer_for(handler, fake, time)
    starting = asyncio.create_task(requests.start())
    await asyncio.wait_for(joining.wait(), 5)
    await requests.stop()
    release.set()
    await asyncio.wait_for(starting, 5)
    assert (fake.started, fake.stopped) == (1, 1)
    assert handler.batches == []
    assert fake.timeouts == []  # never polled
