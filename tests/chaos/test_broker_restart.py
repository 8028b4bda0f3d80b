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
from zoneinfo import ZoneInfo

import pytest

from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, phase_completions
from tests.chaos.own_broker import worker_settings
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
    settings = worker_settings(broker_fault.kafka.url, unique_prefix, tmp_path / "worker-data")
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
