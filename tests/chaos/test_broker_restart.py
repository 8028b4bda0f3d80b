"""Restart the broker under a running worker while game days flow.

The test runs its own Apache Kafka (the session's broker is shared by every other test), stops
it (gracefully, or kill -9: no clean shutdown, log recovery and open transactions left to the
coordinator) and starts it again on the same port and data directory while completions are being
processed, and checks that no completion is lost, no trigger is doubled and ``/ready`` is false
while the broker is away and true again after it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import pytest

from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, phase_completions
from tests.chaos.probes import ReadyWatch
from tests.chaos.report import ChaosReport
from tests.integration.test_readiness_faults import (
    answer_new_triggers,
    assert_one_trigger_per_phase,
    wait_until_committed,
)
from tests.support.apache_kafka import RESTART_QUICKLY, ApacheKafka

# Apache Kafka from the jars, whatever the session's broker; skipped with Tansu like every
# test that demands exactly one trigger record per phase.
pytestmark = [pytest.mark.chaos, pytest.mark.transactions]

DAYS = 4
FAULTS = {
    "graceful": "broker restart (graceful stop, start on same port and data)",
    "kill -9": "broker kill -9, started again on the same port and data",
}


@dataclass(frozen=True)
class BrokerFault:
    kafka: ApacheKafka
    how: str  # a key of FAULTS

    @property
    def name(self) -> str:
        return FAULTS[self.how]

    def inject(self) -> None:
        """Take the broker down ``how`` and start it again (same port and data)."""
        if self.how == "kill -9":
            self.kafka.kill()
        self.kafka.restart()  # a graceful stop first when it still runs


@pytest.fixture(params=list(FAULTS))
def broker_fault(request: pytest.FixtureRequest) -> Iterator[BrokerFault]:
    with ApacheKafka(properties=RESTART_QUICKLY) as kafka:
        yield BrokerFault(kafka, request.param)


async def test_broker_restart_loses_no_completion_and_doubles_no_trigger(
    broker_fault: BrokerFault,
    start_worker: Callable[..., WorkerProcess],
    unique_prefix: str,
    tmp_path: Path,
    chaos_report: ChaosReport,
) -> None:
    settings = Settings(
        broker_url=broker_fault.kafka.url,
        topic_prefix=unique_prefix,
        app_id=f"{unique_prefix}-app",
        data_dir=tmp_path / "worker-data",
        web_port=free_port(),
        kafka_producer_idempotence=True,
        processing_guarantee="exactly_once",
        log_level="INFO",
    )
    fault = broker_fault.name
    await ensure_topics(settings)
    worker = start_worker(settings, restart_on_exit=True)
    await asyncio.to_thread(worker.wait_ready, 180.0)
    registry = load_registry(None)
    today = datetime.now(ZoneInfo(settings.pipeline_timezone)).date()
    dates = [today - timedelta(days=offset) for offset in range(1, DAYS + 1)]
    expected = {(day, phase) for day in dates for phase in (3, 4, 5, 6)}
    triggers: list[PhaseTrigger] = []
    async with (
        ReadyWatch(settings.web_port) as watch,
        CompletionPublisher(settings) as publisher,
        TriggerReader(settings) as reader,
    ):
        for phase in (1, 2):
            for day in dates:
                for event in phase_completions(registry, day, phase, today=today):
                    await publisher.publish(event)
        answered: set[tuple[date, int]] = set()
        down_at = up_at = 0.0
        up_wall = datetime.now(UTC)
        deadline = time.monotonic() + 240
        while {(t.game_date, t.phase) for t in triggers} != expected:
            assert time.monotonic() < deadline, (
                f"stuck: {sorted(expected - {(t.game_date, t.phase) for t in triggers})}\n"
                f"{worker.tail()}"
            )
            triggers += await answer_new_triggers(
                reader, publisher, registry, answered, today=today
            )
            if not down_at and len(answered) >= len(expected) // 3:
                # The completions just published are being processed when the broker goes.
                down_at = time.monotonic()
                await asyncio.to_thread(broker_fault.inject)
                up_at, up_wall = time.monotonic(), datetime.now(UTC)
        triggers += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=4)
        ready = await watch.ready_after(up_at, give_up_after=120)
        answers_while_down = watch.answers_between(down_at, up_at)
    assert up_at, "the broker was never restarted"
    await wait_until_committed(settings, give_up_after=120)  # every completion processed
    assert_one_trigger_per_phase(triggers, expected, strict=True)
    assert False in answers_while_down, f"/ready never said 503 while down: {answers_while_down}"
    # By when each trigger was fired (its triggered_at), not when this test read it.
    after = [(t.triggered_at - up_wall).total_seconds() for t in triggers]
    after = [seconds for seconds in after if seconds > 0]
    chaos_report.record(fault, "broker down (stop + start)", up_at - down_at)
    chaos_report.record(fault, "/ready 503 samples while down", answers_while_down.count(False))
    chaos_report.record(fault, "/ready 200 after broker back", ready)
    if after:
        chaos_report.record(fault, "first trigger fired after broker back", min(after))
        chaos_report.record(fault, "last trigger fired after broker back", max(after))
    chaos_report.record(fault, "supervisor restarts of the worker", worker.restarts)


# --- ten restarts in a row ------------------------------------------------------------------

RESTARTS = 10
#: Game dates whose phases 1-2 are published just before each restart (in flight during it).
IN_FLIGHT = 2
ROUNDS_FAULT = "broker restarted 10 times in a row (graceful / kill -9 alternating)"


async def test_ten_broker_restarts_in_a_row_never_stop_the_worker(
    start_worker: Callable[..., WorkerProcess],
    unique_prefix: str,
    tmp_path: Path,
    chaos_report: ChaosReport,
) -> None:
    """Restarts alternate graceful and kill -9 while completions are in flight; after each one a
    fresh date's completions are published at once and their trigger is timed from the moment
    the broker answers again. The worker must ride out every restart by itself (0 exits)."""
    with ApacheKafka(properties=RESTART_QUICKLY) as kafka:
        settings = Settings(
            broker_url=kafka.url,
            topic_prefix=unique_prefix,
            app_id=f"{unique_prefix}-app",
            data_dir=tmp_path / "worker-data",
            web_port=free_port(),
            kafka_producer_idempotence=True,
            processing_guarantee="exactly_once",
            log_level="INFO",
        )
        await ensure_topics(settings)
        worker = start_worker(settings, restart_on_exit=True)
        await asyncio.to_thread(worker.wait_ready, 180.0)
        registry = load_registry(None)
        today = datetime.now(ZoneInfo(settings.pipeline_timezone)).date()
        dates = iter(today - timedelta(days=n) for n in range(1, RESTARTS * (IN_FLIGHT + 1) + 1))
        published: list[date] = []
        triggers: list[PhaseTrigger] = []
        next_trigger: list[float] = []
        down_for: dict[str, list[float]] = {"graceful": [], "kill -9": []}
        ready_again: list[float] = []

        async def publish_day(publisher: CompletionPublisher) -> date:
            day = next(dates)
            for phase in (1, 2):
                for event in phase_completions(registry, day, phase, today=today):
                    await publisher.publish(event)
            published.append(day)
            return day

        async with (
            ReadyWatch(settings.web_port) as watch,
            CompletionPublisher(settings) as publisher,
            TriggerReader(settings) as reader,
        ):
            for round_ in range(RESTARTS):
                for _ in range(IN_FLIGHT):
                    await publish_day(publisher)
                fault = BrokerFault(kafka, "graceful" if round_ % 2 == 0 else "kill -9")
                down_at = time.monotonic()
                await asyncio.to_thread(fault.inject)
                up_at, up_wall = time.monotonic(), datetime.now(UTC)
                down_for[fault.how].append(up_at - down_at)
                probe = await publish_day(publisher)

                def probe_fired(got: list[PhaseTrigger], day: date = probe) -> bool:
                    return any(t.game_date == day for t in got)

                found = await reader.read_until(probe_fired, give_up_after=120)
                triggers += found
                fired = [t for t in found if t.game_date == probe]
                assert fired, f"no trigger for {probe} after restart {round_ + 1}\n{worker.tail()}"
                next_trigger.append((fired[0].triggered_at - up_wall).total_seconds())
                answers = watch.answers_between(down_at, up_at)
                assert False in answers, f"/ready never said 503 in restart {round_ + 1}"
                ready_again.append(await watch.ready_after(up_at, give_up_after=120))
            triggers += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=4)
        await wait_until_committed(settings, give_up_after=120)  # every completion processed
        assert_one_trigger_per_phase(triggers, {(day, 3) for day in published}, strict=True)
        assert worker.restarts == 0, f"the worker exited {worker.restarts} time(s)\n{worker.tail()}"
    chaos_report.record(ROUNDS_FAULT, "restarts", RESTARTS)
    for how, seconds in down_for.items():
        chaos_report.record(ROUNDS_FAULT, f"broker down ({how}), median", median(seconds))
        chaos_report.record(ROUNDS_FAULT, f"broker down ({how}), max", max(seconds))
    chaos_report.record(ROUNDS_FAULT, "/ready 200 after broker back, max", max(ready_again))
    chaos_report.record(
        ROUNDS_FAULT, "next trigger after broker back, median", median(next_trigger)
    )
    chaos_report.record(ROUNDS_FAULT, "next trigger after broker back, max", max(next_trigger))
    chaos_report.record(
        ROUNDS_FAULT, "next trigger after each restart", " ".join(f"{s:.2f}" for s in next_trigger)
    )
    chaos_report.record(ROUNDS_FAULT, "worker exits", worker.restarts)
