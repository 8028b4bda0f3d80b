"""The BigQuery prediction sink and its Kafka runner, on the real emulator and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import TopicPartition
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from phaseflow.models.codec import decode, encode
from phaseflow.models.events import DeadLetter, Prediction
from phaseflow.sinks.base import SinkFlushError, SinkMetrics
from phaseflow.sinks.bigquery_predictions import PredictionSink
from phaseflow.sinks.predictions_consumer import PredictionSinkRunner
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.bigquery_clients import RetryPolicy, make_bigquery_client
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator
from tests.fixtures.bigquery import STAGINGS
from tests.fixtures.brokers import Broker

# Every test runs on both staging paths (insertAll; Storage Write).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("sink_staging", STAGINGS, indirect=True),
]

GAME_DATE = date(2026, 1, 15)
T0 = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
TIMEOUT = 60.0
# Long enough for a second attempt after a 1 s request timeout.
FAST_RETRY = RetryPolicy(deadline_seconds=1.5, initial_seconds=0.05, maximum_seconds=0.2)


def prediction(
    player: str,
    line: str | None,
    created_at: datetime = T0,
    predicted: float = 20.0,
    system: str = "moving_average",
) -> Prediction:
    return Prediction(
        prediction_id=f"{player}-{system}-{line}-{created_at.isoformat()}",
        game_date=GAME_DATE,
        game_id="G1",
        player_lookup=player,
        system_id=system,
        current_points_line=None if line is None else Decimal(line),
        predicted_points=predicted,
        confidence_score=60.0,
        recommendation="NO_LINE" if line is None else "OVER",
        model_version="v1",
        batch_id="b1",
        created_at=created_at,
    )


class DeadLetters:
    def __init__(self) -> None:
        self.rows: list[tuple[Prediction, str]] = []

    async def __call__(self, row: Prediction, reason: str) -> None:
        self.rows.append((row, reason))


def rows_of(client: bigquery.Client, table_id: str) -> list[dict[str, Any]]:
    sql = (
        "SELECT player_lookup, system_id, line_key, current_points_line, predicted_points, "  # noqa: S608
        f"created_at FROM `{table_id}` ORDER BY player_lookup, system_id, line_key"
    )
    job = client.query(sql, timeout=TIMEOUT, job_retry=None)
    return [dict(row.items()) for row in job.result(timeout=TIMEOUT)]


def count_of(client: bigquery.Client, table_id: str) -> int:
    job = client.query(f"SELECT COUNT(*) AS n FROM `{table_id}`", timeout=TIMEOUT, job_retry=None)  # noqa: S608
    return int(next(iter(job.result(timeout=TIMEOUT)))["n"])


async def until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    within: float = TIMEOUT,
    describe: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {within} s waiting for {what} {describe()}")


# --- the sink alone ---------------------------------------------------------------------


async def test_lines_are_distinct_keys_and_the_latest_created_at_wins(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    dead = DeadLetters()
    async with PredictionSink(
        bq_settings, dead_letter=dead, staging_retention_seconds=0, cleanup_every_seconds=0
    ) as sink:
        sink.add(prediction("lebron", "25.5", T0, predicted=10.0))
        sink.add(prediction("lebron", "26.0", T0, predicted=11.0))
        sink.add(prediction("lebron", "26", T0 + timedelta(seconds=1), predicted=12.0))
        sink.add(prediction("curry", None, T0, predicted=30.0))
        await sink.flush()
        first = rows_of(bq_client, sink.table_id)
        sink.add(prediction("lebron", "25.5", T0 + timedelta(minutes=5), predicted=13.0))
        sink.add(prediction("lebron", "26.0", T0 - timedelta(minutes=5), predicted=99.0))  # older
        sink.add(prediction("curry", None, T0 + timedelta(minutes=1), predicted=31.0))
        await sink.flush()
        staged_left = count_of(bq_client, sink.staging_id)

    assert [(r["player_lookup"], r["line_key"], r["predicted_points"]) for r in first] == [
        ("curry", "NO_LINE", 30.0),
        ("lebron", "25.5", 10.0),
        ("lebron", "26.0", 12.0),  # "26" and "26.0" are one line; the later one won
    ]
    final = rows_of(bq_client, sink.table_id)
    assert [
        (r["player_lookup"], r["current_points_line"], r["predicted_points"]) for r in final
    ] == [
        ("curry", None, 31.0),  # NO_LINE matched its earlier row (line_key), replaced
        ("lebron", Decimal("25.5"), 13.0),  # newer replaced
        ("lebron", Decimal("26.0"), 12.0),  # older ignored
    ]
    assert sink.metrics.flushes == 2
    assert sink.metrics.rows_written == 7
    assert sink.durable_seq == 7
    assert sink.oldest_unwritten_age() is None
    assert staged_left == 0  # cleanup (retention 0 here) deleted the merged staging rows
    assert dead.rows == []


async def test_with_a_location_the_sink_creates_its_dataset_there_and_rows_still_merge(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    """PHASEFLOW_BIGQUERY_LOCATION reaches dataset creation and the query jobs (MERGE)."""
    dataset = f"{bq_settings.bigquery_dataset}_eu"
    settings = bq_settings.model_copy(
        update={"bigquery_location": "EU", "bigquery_dataset": dataset}
    )
    try:
        async with PredictionSink(settings, dead_letter=DeadLetters(), flush_seconds=60) as sink:
            assert sink._client.location == "EU"
            sink.add(prediction("a", "20.5"))
            sink.add(prediction("b", None))
            await sink.flush()
            sink.add(prediction("a", "20.5", T0 + timedelta(minutes=1), predicted=25.0))
            await sink.flush()

        stored = bq_client.get_dataset(f"{bq_client.project}.{dataset}", timeout=TIMEOUT)
        assert stored.location == "EU"
        assert [
            (r["player_lookup"], r["line_key"], r["predicted_points"])
            for r in rows_of(bq_client, sink.table_id)
        ] == [("a", "20.5", 25.0), ("b", "NO_LINE", 20.0)]
    finally:
        bq_client.delete_dataset(
            f"{bq_client.project}.{dataset}",
            delete_contents=True,
            not_found_ok=True,
            timeout=TIMEOUT,
        )


async def test_rows_bigquery_rejects_go_to_dead_letters_and_the_batch_goes_on(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    dead = DeadLetters()
    # Past the model's validation (which would refuse it) to reach BigQuery's own row check:
    # NUMERIC holds 29 integer digits.
    poison = prediction("bad", "1").model_copy(update={"current_points_line": Decimal("1e40")})
    async with PredictionSink(bq_settings, dead_letter=dead) as sink:
        sink.add(prediction("a", "20.5"))
        sink.add(poison)
        sink.add(prediction("b", "21.5"))
        await sink.flush()

    assert [r["player_lookup"] for r in rows_of(bq_client, sink.table_id)] == ["a", "b"]
    assert [row.player_lookup for row, _ in dead.rows] == ["bad"]
    assert "rejected" in dead.rows[0][1]
    assert sink.metrics.rows_dead_lettered == 1
    assert sink.durable_seq == 3


class RefusingClient(bigquery.Client):
    """The emulator's client, except that BigQuery refuses (400) every MERGE whose rows include a
    seq in ``refused``, or every MERGE at all while ``refuse_all`` is set.

    Injected because the emulator refuses no MERGE for a row's values: it enforces neither a
    NUMERIC precision nor REQUIRED in DML (both checked), the ways real BigQuery would."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
        )
        self.refused: set[int] = set()
        self.refuse_all = False
        self.merges = 0

    def query_and_wait(self, query: str, **kwargs: Any) -> Any:
        if query.startswith("MERGE"):
            self.merges += 1
            params = {p.name: p.value for p in kwargs["job_config"].query_parameters}
            first, last = params["first_seq"], params["last_seq"]
            hit = sorted(seq for seq in self.refused if first <= seq <= last)
            if self.refuse_all or hit:
                raise gexc.BadRequest(f"refused: rows {hit} cannot be merged")  # type: ignore[no-untyped-call]
        return super().query_and_wait(query, **kwargs)


def refusing_sink(
    settings: Settings, dead: DeadLetters, *, isolate_after_rejections: int
) -> tuple[PredictionSink, RefusingClient]:
    """A sink on the emulator whose MERGEs a test can refuse (see RefusingClient)."""
    client = RefusingClient(settings)
    sink = PredictionSink(
        settings,
        dead_letter=dead,
        client=client,
        retry_policy=FAST_RETRY,
        flush_seconds=60,
        isolate_after_rejections=isolate_after_rejections,
    )
    return sink, client


def recent(player: str, line: str) -> Prediction:
    return prediction(player, line).model_copy(update={"game_date": datetime.now(UTC).date()})


async def test_rows_a_merge_refuses_are_isolated_and_dead_lettered_after_n_refusals(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    dead = DeadLetters()
    sink, client = refusing_sink(bq_settings, dead, isolate_after_rejections=2)
    try:
        await sink.start()
        seqs = {sink.add(recent(f"p{i:02d}", "20.5")): f"p{i:02d}" for i in range(16)}
        client.refused = {seq for seq, player in seqs.items() if player in {"p03", "p11"}}
        for attempt in (1, 2):  # refused as a whole: retried, nothing dead-lettered yet
            with pytest.raises(SinkFlushError, match=f"attempt {attempt}"):
                await sink.flush()
            assert dead.rows == []
            assert sink.durable_seq == 0
        merges_before = client.merges
        await sink.flush()  # the third time it isolates the two rows
        isolating_merges = client.merges - merges_before
        later = sink.add(recent("after", "21.5"))
        await sink.flush()  # the next batch is not blocked
    finally:
        await sink.stop()
        client.close()  # type: ignore[no-untyped-call]

    assert sorted(row.player_lookup for row, _ in dead.rows) == ["p03", "p11"]
    assert all("refused to merge" in reason for _, reason in dead.rows)
    merged = [r["player_lookup"] for r in rows_of(bq_client, sink.table_id)]
    assert merged == sorted({*seqs.values(), "after"} - {"p03", "p11"})
    assert sink.durable_seq == later
    assert sink.metrics.rows_dead_lettered == 2
    # 1 empty MERGE + a bisection of 16 rows around 2 bad ones, not one MERGE per row
    assert isolating_merges <= 1 + 2 * 2 * 4 + 1


async def test_a_merge_refused_whatever_the_rows_dead_letters_nothing_and_keeps_the_batch(
    bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    dead = DeadLetters()
    sink, client = refusing_sink(bq_settings, dead, isolate_after_rejections=1)
    try:
        await sink.start()
        for i in range(4):
            sink.add(recent(f"p{i}", "20.5"))
        client.refuse_all = True  # e.g. the target's schema no longer fits the statement
        for attempt in (1, 2, 3):
            with pytest.raises(SinkFlushError, match=f"attempt {attempt}"):
                await sink.flush()
        assert dead.rows == []
        assert sink.buffered == 4
        assert sink.durable_seq == 0
        client.refuse_all = False  # fixed: the same batch goes through, every row
        await sink.flush()
    finally:
        await sink.stop()
        client.close()  # type: ignore[no-untyped-call]

    assert [r["player_lookup"] for r in rows_of(bq_client, sink.table_id)] == [
        "p0",
        "p1",
        "p2",
        "p3",
    ]
    assert dead.rows == []
    assert sink.durable_seq == 4


class HangingProxy:
    """A TCP proxy to the emulator that, while ``hang`` is set, swallows requests and never
    answers (on new and on kept-alive connections alike)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hang = False
        self.hung_requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        sock: socket.socket = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers += [writer, up_writer]
            await asyncio.gather(
                self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer)
            )

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if upstream and self.hang:
                    self.hung_requests += 1  # swallowed: the client waits for an answer
                    continue
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_hanging_request_times_out_fails_the_flush_cleanly_and_is_retried(
    bq_settings: Settings, bigquery_emulator: BigQueryEmulator, bq_client: bigquery.Client
) -> None:
    proxy = HangingProxy(bigquery_emulator.rest_port)
    port = await proxy.start()
    settings = bq_settings.model_copy(
        update={"bigquery_endpoint": f"http://127.0.0.1:{port}", "bigquery_timeout_seconds": 1.0}
    )
    dead = DeadLetters()
    sink = PredictionSink(settings, dead_letter=dead, retry_policy=FAST_RETRY, flush_seconds=60)
    try:
        await sink.start()  # tables created through the proxy while it answers
        proxy.hang = True
        sink.add(prediction("a", "20.5"))
        began = time.monotonic()
        with pytest.raises(SinkFlushError, match="attempt 1"):
            await sink.flush()
        hung_for = time.monotonic() - began
        assert proxy.hung_requests >= 2  # our retry (and the library's) tried again
        assert sink.buffered == 1
        assert sink.durable_seq == 0
        assert sink.metrics.failures == 1
        assert sink.metrics.retries >= 1
        proxy.hang = False
        await sink.flush()  # the same batch, retried: now it goes through
    finally:
        await sink.stop()
        await proxy.close()

    # bounded: the 1.5 s retry deadline + one last 1 s request
    assert hung_for < 10
    assert sink.durable_seq == 1
    assert [r["player_lookup"] for r in rows_of(bq_client, sink.table_id)] == ["a"]


# --- the runner on a real broker --------------------------------------------------------


def runner_settings(base: Settings, broker: Broker, prefix: str) -> Settings:
    return base.model_copy(
        update={
            "broker_url": broker.url,
            "topic_prefix": prefix,
            "kafka_topic_partitions": 2,
            "kafka_producer_idempotence": broker.supports_transactions,
            "sink_flush_seconds": 0.2,
            "sink_batch_rows": 50,
            "bigquery_requests_per_second": 200,
        }
    )


async def produce(broker: Broker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = kafka_clients.producer(KafkaEndpoint(broker.bootstrap), enable_idempotence=False)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def offsets_reader(
    broker: Broker, group: str, topic: str, partitions: int
) -> AsyncIterator[Callable[[], Awaitable[tuple[dict[int, int], dict[int, int]]]]]:
    consumer = kafka_clients.consumer(KafkaEndpoint(broker.bootstrap), group_id=group)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]

    async def read() -> tuple[dict[int, int], dict[int, int]]:
        ends = await consumer.end_offsets(tps)
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
        return committed, {tp.partition: ends[tp] for tp in tps}

    try:
        yield read
    finally:
        await consumer.stop()


async def dead_letters_in(broker: Broker, topic: str, expected: int) -> list[DeadLetter]:
    consumer = kafka_clients.consumer(
        KafkaEndpoint(broker.bootstrap), topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(letters) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters.extend(decode(DeadLetter, r.value) for r in records)
    finally:
        await consumer.stop()
    return letters


def day_of_predictions(players: int, start: int = 0) -> list[Prediction]:
    out = []
    for i in range(start, start + players):
        out.append(prediction(f"p{i:03d}", "20.5"))
        out.append(prediction(f"p{i:03d}", "21.0"))
        out.append(prediction(f"p{i:03d}", None, system="xgb"))
    return out


async def test_runner_writes_every_key_once_when_everything_is_delivered_twice(
    broker: Broker, unique_prefix: str, bq_settings: Settings, bq_client: bigquery.Client
) -> None:
    settings = runner_settings(bq_settings, broker, unique_prefix)
    await ensure_topics(settings)
    topic = settings.topic(TopicName.PREDICTIONS)
    predictions = day_of_predictions(40)  # 120 keys
    records = [(p.key.encode(), encode(p)) for p in predictions]
    malformed = [(b"2026-01-15:x:y:1.0", b"{not json"), (b"k", b'{"prediction_id": "only"}')]
    await produce(broker, topic, records + malformed[:1])
    await produce(broker, topic, records + malformed[1:])  # every prediction twice
    runner = PredictionSinkRunner(
        settings, group_id=f"{unique_prefix}-sink", **broker.client_tuning
    )

    async with (
        offsets_reader(broker, runner.group_id, topic, 2) as offsets,
        runner,
    ):
        last: list[object] = []

        async def all_committed() -> bool:
            # Compared with the number of records produced: Tansu's end_offsets under-report.
            committed, ends = await offsets()
            last[:] = [committed, ends]
            return sum(committed.values()) == 2 * len(records) + len(malformed)

        await until(
            all_committed,
            "every offset committed",
            describe=lambda: (
                f"{last} {runner.records_consumed=} {runner.sink.durable_seq=} "
                f"{runner.sink.buffered=} {runner.commits=} {runner.sink.metrics}"
            ),
        )

    table_id = runner.sink.table_id
    assert count_of(bq_client, table_id) == 120
    assert (
        len(
            {
                (r["player_lookup"], r["system_id"], r["line_key"])
                for r in rows_of(bq_client, table_id)
            }
        )
        == 120
    )
    letters = await dead_letters_in(broker, settings.topic(TopicName.DEAD_LETTERS), 2)
    assert sorted(letter.error_type for letter in letters) == ["missing_field", "not_json"]
    assert runner.dead_letters_sent == 2
    assert runner.records_consumed == 2 * 120 + 2


async def test_runner_rides_out_a_bigquery_outage_without_loss_duplicates_or_early_commits(
    broker: Broker, unique_prefix: str, sink_staging: str
) -> None:
    project = "sink-outage"
    with BigQueryEmulator(project, persistent=True) as emulator:
        base = Settings(
            bigquery_endpoint=emulator.endpoint,
            bigquery_write_endpoint=emulator.write_endpoint,
            sink_staging=sink_staging,
            bigquery_project=project,
            bigquery_dataset="outage",
            bigquery_timeout_seconds=2.0,
        )
        settings = runner_settings(base, broker, unique_prefix)
        await ensure_topics(settings)
        topic = settings.topic(TopicName.PREDICTIONS)
        first = day_of_predictions(20)
        second = [
            p.model_copy(update={"created_at": T0 + timedelta(hours=1), "predicted_points": 33.0})
            for p in day_of_predictions(30, start=10)
        ]  # players 10-19 updated (30 keys), 20-39 new (60 keys); 0-9 untouched (30 keys)
        client = make_bigquery_client(base)
        sink = PredictionSink(
            settings,
            dead_letter=DeadLetters(),
            retry_policy=FAST_RETRY,
            failure_backoff_seconds=0.5,
            metrics=SinkMetrics(),
        )
        group = f"{unique_prefix}-sink"
        runner = PredictionSinkRunner(settings, sink=sink, group_id=group, **broker.client_tuning)
        try:
            async with offsets_reader(broker, group, topic, 2) as offsets, runner:
                produced = 0

                async def all_committed() -> bool:
                    committed, _ = await offsets()
                    return sum(committed.values()) == produced

                await produce(broker, topic, [(p.key.encode(), encode(p)) for p in first])
                produced += len(first)
                await until(all_committed, "the first batch committed")
                before, _ = await offsets()

                emulator.kill()
                down_at = time.monotonic()
                await produce(broker, topic, [(p.key.encode(), encode(p)) for p in second])
                produced += len(second)
                await asyncio.sleep(8)
                during, _ = await offsets()
                assert during == before  # nothing committed while BigQuery is down
                assert sum(during.values()) == len(first)
                assert runner.records_consumed == len(first) + len(second)
                assert sink.metrics.failures >= 1
                age = sink.oldest_unwritten_age()
                assert age is not None
                assert age > 5
                await asyncio.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
                await asyncio.to_thread(emulator.start)  # same ports, data kept

                await until(all_committed, "the second batch committed after the outage")
            assert count_of(client, runner.sink.table_id) == 120
            rows = rows_of(client, runner.sink.table_id)
            assert sum(1 for r in rows if r["predicted_points"] == 33.0) == 90
            assert sum(1 for r in rows if r["predicted_points"] == 20.0) == 30
            assert len({(r["player_lookup"], r["system_id"], r["line_key"]) for r in rows}) == 120
        finally:
            client.close()
