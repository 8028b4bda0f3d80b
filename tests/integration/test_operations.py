"""``phaseflow dlq list|replay`` and ``phaseflow rerun`` against a real broker and worker, and
the lag monitor wired into the worker (``GET /lag``)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, DeadLetter, PhaseCompletion, RerunRequest
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.dlq import (
    list_command,
    read_letters,
    read_topic,
    replay_command,
)
from phaseflow.streams.dlq_letters import LetterFilter
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.rerun import plan_reruns, rerun_command
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion

ZONE = ZoneInfo("America/New_York")
# Yesterday in the pipeline's zone: overnight mode, every required processor expected.
GAME_DATE = (datetime.now(ZONE) - timedelta(days=1)).date()
PHASE2 = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]


async def _letters(settings: Settings, want: int, within: float = 60.0) -> list[DeadLetter]:
    deadline = time.monotonic() + within
    while True:
        letters = [item.letter for item in (await read_letters(settings))[0]]
        if len(letters) >= want or time.monotonic() > deadline:
            return letters
        await asyncio.sleep(0.5)


async def _lag_partitions(settings: Settings, within: float = 60.0) -> dict[str, object]:
    """``GET /lag`` until it lists partitions (the monitor sampled committed offsets)."""
    body: dict[str, object] = {}
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:
        while time.monotonic() < deadline:
            async with http.get("/lag") as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            if body["partitions"]:
                return body
            await asyncio.sleep(0.5)
    return body


async def _make_dead_letters(settings: Settings) -> PhaseCompletion:
    """Two bad completions the worker dead-letters, two good ones, and a planted letter that
    holds the third good one; returns that one."""
    completions = settings.topic(TopicName.PHASE_COMPLETIONS)
    # Two bad completions reach the worker and become dead letters.
    bad = [b"not json at all", encode(make_completion(PHASE2[0], GAME_DATE, 2))[:-1]]
    async with CompletionPublisher(settings) as publisher:
        for raw in bad:
            await publisher.publish_raw(GAME_DATE.isoformat().encode(), raw)
        # Two of the three required phase-2 processors report normally.
        for name in PHASE2[:2]:
            await publisher.publish(make_completion(name, GAME_DATE, 2))
    letters = await _letters(settings, 2)
    assert sorted(letter.error_type for letter in letters) == ["not_json", "not_json"]

    # The third processor's completion sits in the dead letters (as if it had failed on a
    # since-fixed bug): valid bytes, failed two hours ago.
    valid = make_completion(PHASE2[2], GAME_DATE, 2)
    planted = DeadLetter.wrap(
        source_topic=completions,
        partition=0,
        offset=10_000,  # not a real offset: only the ledger key depends on it
        key=GAME_DATE.isoformat().encode(),
        value=encode(valid),
        error="processor registry was missing p2_nbacom_boxscores",
        error_type="unknown_processor",
        failed_at=datetime.now(UTC) - timedelta(hours=2),
    )
    async with SideProducer(settings) as producer:
        await producer.send(TopicName.DEAD_LETTERS, planted.key or "", encode(planted))
    await _letters(settings, 3)
    return valid


async def test_dead_letters_are_listed_and_replayed_once_and_lag_is_served(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings(lag_sample_interval_seconds=0.5)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)

    completions = settings.topic(TopicName.PHASE_COMPLETIONS)
    valid = await _make_dead_letters(settings)

    out = io.StringIO()
    assert await list_command(settings, LetterFilter(), out=out) == 0
    listing = out.getvalue()
    assert listing.count("not_json") == 2
    assert "unknown_processor" in listing
    assert "3 dead letter(s), 3 not replayed; oldest not replayed: 2h" in listing
    out = io.StringIO()
    await list_command(settings, LetterFilter(older_than=timedelta(hours=1)), out=out)
    assert "not_json" not in out.getvalue()
    assert "1 dead letter(s), 1 not replayed" in out.getvalue()

    # No trigger yet: phase 2 waits for its third processor.
    selection = LetterFilter(topic="phase-completions", reason="unknown_processor")
    out = io.StringIO()
    assert await replay_command(settings, selection, dry_run=True, out=out) == 0
    assert "1 to replay" in out.getvalue()
    assert "dry run: nothing sent" in out.getvalue()
    before = len(await read_topic(settings, TopicName.PHASE_COMPLETIONS))
    assert before == 4  # the dry run sent nothing

    out = io.StringIO()
    assert await replay_command(settings, selection, dry_run=False, out=out) == 0
    assert "replayed 1 dead letter(s)" in out.getvalue()
    assert "1/1" in out.getvalue()  # the progress bar
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
    assert [(t.game_date, t.phase, t.reason) for t in triggers] == [(GAME_DATE, 3, "ready")]

    # A second replay of the same selection sends nothing: the ledger lists the letter.
    out = io.StringIO()
    assert await replay_command(settings, selection, dry_run=False, out=out) == 0
    assert "1 already replayed" in out.getvalue()
    assert "0 to replay" in out.getvalue()
    records = await read_topic(settings, TopicName.PHASE_COMPLETIONS)
    assert len(records) == before + 1
    assert [r.key for r in records if r.value == encode(valid)] == [
        GAME_DATE.isoformat().encode()
    ], "the original key and bytes went back, once"
    ledger = await read_topic(settings, TopicName.DEAD_LETTER_REPLAYS)
    assert [r.key for r in ledger] == [f"{completions}:0:10000".encode()]
    out = io.StringIO()
    await list_command(settings, LetterFilter(reason="unknown_processor"), out=out)
    assert " yes " in out.getvalue()

    # The trigger fired once; nothing more arrives.
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(lambda _: False, give_up_after=3)
    assert [(t.phase, t.reason) for t in triggers] == [(3, "ready")]

    await _assert_worker_monitoring(settings)


async def _assert_worker_monitoring(settings: Settings) -> None:
    """/lag, the DLQ gauges and the dlq alert of a worker that dead-lettered two records and
    saw a third letter replayed."""
    # The lag monitor runs in the worker: /lag answers with the own group's partitions.
    body = await _lag_partitions(settings)
    assert body["partitions"], body
    assert isinstance(body["total"], int)

    # The worker's DLQ gauges: the two bad letters are left, the oldest a few seconds old.
    gauges = await _dlq_gauges(settings, want_unreplayed=2)
    assert gauges["phaseflow_dead_letters_unreplayed"] == 2
    assert 0 < gauges["phaseflow_dead_letters_oldest_unreplayed_seconds"] < 3600
    async with TopicReader(settings, TopicName.ALERTS, Alert) as reader:
        alerts = await reader.read_until(
            lambda found: any(a.kind == "dlq" for a in found), give_up_after=30
        )
    assert [a.subject for a in alerts if a.kind == "dlq"] == [
        settings.topic(TopicName.DEAD_LETTERS)
    ]


async def _dlq_gauges(
    settings: Settings, want_unreplayed: int, within: float = 30.0
) -> dict[str, float]:
    values: dict[str, float] = {}
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:
        while time.monotonic() < deadline:
            async with http.get("/metrics") as response:
                text = await response.text()
            values = {
                sample.name: sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith("phaseflow_dead_letters_")
            }
            if values.get("phaseflow_dead_letters_unreplayed") == want_unreplayed:
                return values
            await asyncio.sleep(0.5)
    return values


async def test_rerun_publishes_the_planned_requests_and_a_dry_run_none(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    registry = load_registry(None)
    start, end = date(2026, 1, 10), date(2026, 1, 11)

    out = io.StringIO()
    code = await rerun_command(
        settings,
        start=start,
        end=end,
        phase=None,
        processor=None,
        attempt=1,
        dry_run=True,
        out=out,
    )
    assert code == 0
    assert "dry run: nothing sent" in out.getvalue()
    assert await read_topic(settings, TopicName.RERUN_REQUESTS) == []

    plans: list[tuple[date | None, int | None, str | None]] = [
        (end, None, None),  # every gated phase over two dates: backfill
        (None, 4, None),  # one phase's expected processors: manual
        (None, None, "phase6_export"),  # one processor: manual
    ]
    for last, phase, processor in plans:
        out = io.StringIO()
        code = await rerun_command(
            settings,
            start=start,
            end=last,
            phase=phase,
            processor=processor,
            attempt=1,
            dry_run=False,
            out=out,
            phase_timeout=None,  # no worker here to fire the later phases
        )
        assert code == 0
        assert "published" in out.getvalue()

    today = datetime.now(ZONE).date()
    expected = [
        request
        for last, phase, processor in plans
        for request in plan_reruns(
            registry,
            start=start,
            end=last,
            phase=phase,
            processor=processor,
            today=today,
            now=datetime.now(UTC),
            requested_by="cli",
        )
    ]
    found = [
        decode(RerunRequest, record.value or b"")
        for record in await read_topic(settings, TopicName.RERUN_REQUESTS)
    ]
    assert sorted((r.request_id, r.key, r.reason) for r in found) == sorted(
        (r.request_id, r.key, r.reason) for r in expected
    )
    assert {r.reason for r in found} == {"backfill", "manual"}
    assert len(found) == len(expected) > 10


async def test_a_busy_then_idle_worker_never_trips_its_watchdog(
    make_settings: Callable[..., Settings],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # A window of 2 s: any false STALL/STOP on the readiness partitions would crash the worker
    # within seconds (and the supervisor would restart it).
    settings = make_settings(lag_sample_interval_seconds=0.3, lag_window_seconds=2.0)
    await ensure_topics(settings)
    worker = start_worker(settings, restart_on_exit=True)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher:
        for name in PHASE2:
            await publisher.publish(make_completion(name, GAME_DATE, 2))
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
    assert [t.phase for t in triggers] == [3]
    await asyncio.sleep(8)  # four windows of idleness
    assert worker.restarts == 0, worker.tail()
    log = worker.log_path.read_text(errors="replace")
    assert "lag monitor watching" in log
    assert "WATCHDOG" not in log
