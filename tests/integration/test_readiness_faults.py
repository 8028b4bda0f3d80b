"""Readiness on a real broker under duplicates, reordering, bad input, crashes and rebalances.

On brokers with transactions (Apache Kafka) the workers run with ``exactly_once`` and the test
demands one trigger record per (date, phase). Without transactions (Tansu) a crash between
sending a trigger and recording its offset may re-send it; the re-send carries the same
``trigger_id``, so there the test demands one distinct trigger per (date, phase).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from phaseflow.models.codec import encode
from phaseflow.models.events import DeadLetter, PhaseTrigger, RerunRequest
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import (
    TopicReader,
    TriggerReader,
    make_completion,
    phase_completions,
)
from tests.integration.stuck_report import stuck_report

GAME_DATE = date(2026, 2, 1)
TODAY = date(2026, 2, 2)


def assert_one_trigger_per_phase(
    triggers: list[PhaseTrigger], expected: set[tuple[date, int]], *, strict: bool
) -> None:
    records = Counter((t.game_date, t.phase) for t in triggers)
    distinct = {(t.game_date, t.phase, t.trigger_id) for t in triggers}
    assert set(records) == expected, f"fired {sorted(records)}, expected {sorted(expected)}"
    assert len(distinct) == len(expected), f"more than one trigger id per phase: {distinct}"
    if strict:
        assert all(count == 1 for count in records.values()), f"duplicates: {records}"


async def answer_new_triggers(
    reader: TriggerReader,
    publisher: CompletionPublisher,
    registry: Registry,
    answered: set[tuple[date, int]],
    *,
    today: date,
) -> list[PhaseTrigger]:
    """The triggers that arrive within a moment; for each (date, phase) triggered for the first
    time, publish that phase's completions, as its processors would, and remember it."""
    found = await reader.read(0.25)
    for trigger in found:
        if (trigger.game_date, trigger.phase) in answered:
            continue
        answered.add((trigger.game_date, trigger.phase))
        for event in phase_completions(registry, trigger.game_date, trigger.phase, today=today):
            await publisher.publish(event)
    return found


async def wait_until_committed(settings: Settings, give_up_after: float = 60) -> None:
    """Until the worker's group has committed every completion published so far."""
    topic = settings.topic(TopicName.PHASE_COMPLETIONS)
    probe = kafka_clients.consumer(settings, group_id=settings.app_id)
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        ends = await probe.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + give_up_after
        while [tp for tp in tps if (await probe.committed(tp) or 0) < ends[tp]]:
            assert asyncio.get_running_loop().time() < deadline, "completions never committed"
            await asyncio.sleep(0.1)
    finally:
        await probe.stop()


def whole_day(game_date: date) -> list[bytes]:
    registry = load_registry(None)
    return [
        encode(event)
        for phase in (1, 2, 3, 4, 5, 6)
        for event in phase_completions(registry, game_date, phase, today=TODAY)
    ]


async def test_a_day_duplicated_and_shuffled_fires_each_phase_once(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    broker: Any,
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    events = whole_day(GAME_DATE) * 2
    random.Random(7).shuffle(events)
    worker = start_worker(settings)
    async with CompletionPublisher(settings) as publisher:
        for raw in events:
            await publisher.publish_raw(GAME_DATE.isoformat().encode(), raw)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(
            lambda found: len(found) >= 4, give_up_after=60, quiet_for=3
        )
    assert_one_trigger_per_phase(
        triggers, {(GAME_DATE, p) for p in (3, 4, 5, 6)}, strict=broker.supports_transactions
    )


async def test_bad_input_is_dead_lettered_and_good_events_still_trigger(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings(max_message_bytes=4096)
    await ensure_topics(settings)
    worker = start_worker(settings)
    good = [
        make_completion(name, GAME_DATE, 2)
        for name in ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]
    ]
    naive = encode(good[0]).replace(b"+00:00", b"")
    bad = {
        b"not json at all": "not_json",
        b'{"processor_name": "p2_odds_game_lines", "game_date": "2026-02-01", "phase": 2, '
        b'"status": "success", "record_count": "many", "timestamp": "2026-02-01T10:00:00Z"}': (
            "invalid_field"
        ),
        encode(good[0]).replace(b'"phase":2', b'"phase":"phase_9_nope"'): "unknown_phase",
        naive: "naive_timestamp",
        b'{"pad": "' + b"x" * 5000 + b'"}': "oversized",
    }
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(good[0])
        for raw in bad:
            await publisher.publish_raw(b"2026-02-01", raw)
        for event in good[1:]:
            await publisher.publish(event)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TopicReader(settings, TopicName.DEAD_LETTERS, DeadLetter) as reader:
        letters = await reader.read_until(lambda found: len(found) >= len(bad), give_up_after=60)
    assert sorted(letter.error_type for letter in letters) == sorted(bad.values())
    assert all(
        letter.error and letter.source_topic.endswith("phase-completions") for letter in letters
    )
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
    assert [(t.phase, t.reason) for t in triggers] == [(3, "ready")]


SHORT_DEADLINES = """
retention_days = 30
[rerun]
max_attempts = 2
backoff = "1s"
[[phases]]
phase = 2
name = "raw"
processors = ["r1", "r2"]
[[phases]]
phase = 3
name = "analytics"
processors = ["a", "b", "c"]
tiers = [{ after = "6s", min_complete = 2 }]
max_wait = "30s"
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""


async def test_a_deadline_set_before_kill_9_fires_once_after_restart(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    broker: Any,
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(SHORT_DEADLINES)
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
        for name in ("r1", "r2"):
            await publisher.publish(make_completion(name, GAME_DATE, 2))
        first = await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
        assert [(t.phase, t.reason) for t in first] == [(3, "ready")]
        for name in ("a", "b"):  # 2 of 3: the 6 s tier will fire, not a ready rule
            await publisher.publish(make_completion(name, GAME_DATE, 3))
        await wait_until_committed(settings)  # the completions are processed and committed
        worker.kill()  # kill -9 while the deadline is pending
        # The worker is a separate process on the wall clock: let its 6 s deadline pass for real
        # while no worker runs (the virtual-clock unit tests cover the arithmetic).
        await asyncio.sleep(5)
        worker.start()
        later = await reader.read_until(
            lambda found: len(found) >= 1, give_up_after=90, quiet_for=4
        )
    assert [(t.phase, t.reason, t.rule) for t in later] in (
        [(4, "timeout", "tier_1_2_of_3")],
        # without transactions the crash may have lost phase 3's commit: then its trigger is
        # re-sent (same id) before the deadline trigger
        [(3, "ready", "all_complete"), (4, "timeout", "tier_1_2_of_3")],
    )
    assert_one_trigger_per_phase(
        first + later, {(GAME_DATE, 3), (GAME_DATE, 4)}, strict=broker.supports_transactions
    )
    async with TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns_reader:
        reruns = await reruns_reader.read_until(lambda found: len(found) >= 1, give_up_after=30)
    assert {(r.processor_name, r.reason) for r in reruns} == {("c", "missing_at_deadline")}


async def test_two_workers_one_killed_mid_day_lose_and_duplicate_nothing(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    broker: Any,
    tmp_path: Path,
) -> None:
    # Kafka's minimum session timeout is 6 s: the survivor takes over the dead worker's
    # partitions after that, instead of Faust's default 60 s.
    # A taken-over partition left unread (or read past) after the kill was faust-streaming
    # resuming stream partitions before seeking them (docs/failure-modes.md, 5.; fixed by
    # streams/faust_stream_seek.py). The lag watchdog stays the last resort: it restarts the
    # worker once its own group is STOP for lag_window_seconds; 30 s (production default
    # 120 s) keeps that inside this test's budget; the assertions are unchanged.
    common: dict[str, Any] = {"kafka_topic_partitions": 4, "lag_window_seconds": 30.0}
    if broker.kind != "tansu":
        common |= {"kafka_session_timeout_seconds": 6.0, "kafka_heartbeat_interval_seconds": 1.0}
    first_settings = make_settings(**common, data_dir=tmp_path / "w1")
    second_settings = first_settings.model_copy(
        update={"data_dir": tmp_path / "w2", "web_port": free_port()}
    )
    await ensure_topics(first_settings)
    # Supervised, as in production: a worker that exits is restarted and catches up. (The
    # survivor used to exit here when it reused producers fenced while its partitions were the
    # other worker's: streams/faust_rebalance_producers.py; it prints its restarts below.)
    first = start_worker(first_settings, restart_on_exit=True)
    second = start_worker(second_settings, restart_on_exit=True)
    await asyncio.to_thread(first.wait_ready, 120.0)
    await asyncio.to_thread(second.wait_ready, 120.0)
    registry = load_registry(None)
    dates = [GAME_DATE + timedelta(days=offset) for offset in range(8)]
    today = dates[-1] + timedelta(days=1)
    expected = {(day, phase) for day in dates for phase in (3, 4, 5, 6)}
    async with (
        CompletionPublisher(first_settings) as publisher,
        TriggerReader(first_settings) as reader,
    ):
        for phase in (1, 2):
            for day in dates:
                for event in phase_completions(registry, day, phase, today=today):
                    await publisher.publish(event)
        triggers: list[PhaseTrigger] = []
        answered: set[tuple[date, int]] = set()
        killed = False
        deadline = asyncio.get_running_loop().time() + 150
        while {(t.game_date, t.phase) for t in triggers} != expected:
            if asyncio.get_running_loop().time() >= deadline:
                stuck = expected - {(t.game_date, t.phase) for t in triggers}
                report = await stuck_report(first_settings, stuck)
                raise AssertionError(f"stuck: {sorted(stuck)}\n{report}\n{second.tail()}")
            triggers += await answer_new_triggers(
                reader, publisher, registry, answered, today=today
            )
            if not killed and len(answered) >= len(expected) // 3:
                first.kill()  # mid-day: some dates done, some in flight
                killed = True
        triggers += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=4)
    assert killed
    print(f"survivor restarts after crashing: {second.restarts}")
    assert_one_trigger_per_phase(triggers, expected, strict=broker.supports_transactions)
