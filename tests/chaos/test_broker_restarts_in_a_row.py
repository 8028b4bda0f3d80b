"""Ten broker restarts in a row under one running worker (graceful and kill -9 alternating).

Marked ``endurance``, not ``chaos``: it asserts correctness only (no worker exit, one trigger per
date, every completion processed) and takes minutes, so ``make test`` runs it beside the other
files instead of in the chaos suite's quiet single process. Its numbers still go to the chaos
report; the quiet-machine numbers in docs/failure-modes.md come from running it alone:
``PHASEFLOW_TEST_BROKER=kafka .venv/bin/pytest -m "chaos or endurance" tests/chaos``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
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
from tests.chaos.test_broker_restart import BrokerFault
from tests.integration.test_readiness_faults import (
    assert_one_trigger_per_phase,
    wait_until_committed,
)
from tests.support.apache_kafka import RESTART_QUICKLY, ApacheKafka

pytestmark = [pytest.mark.endurance, pytest.mark.transactions]

RESTARTS = 10
#: Game dates whose phases 1-2 are published just before each restart (in flight during it).
IN_FLIGHT = 2
ROUNDS_FAULT = "broker restarted 10 times in a row (graceful / kill -9 alternating)"


@dataclass
class Rounds:
    """What each restart measured, in seconds; ``record`` puts it in the chaos report."""

    down_for: dict[str, list[float]] = field(
        default_factory=lambda: {"graceful": [], "kill -9": []}
    )
    #: From the broker answering again to the probe's trigger (its ``triggered_at``).
    next_trigger: list[float] = field(default_factory=list)
    #: From the broker answering again to the probe's completions being acknowledged, and to
    #: its trigger being readable by a read_committed consumer (its transaction committed; the
    #: reader polls every 0.25 s): the publisher's, the worker's and the commit's share of a
    #: slow restart.
    published_after: list[float] = field(default_factory=list)
    readable_after: list[float] = field(default_factory=list)
    ready_again: list[float] = field(default_factory=list)

    def line(self, number: int, how: str, up_wall: datetime, probe: date) -> str:
        """One restart's timeline, to read a slow restart's worker log against."""
        return (
            f"restart {number} ({how}): broker back {up_wall:%H:%M:%S.%f}Z; probe {probe} "
            f"published +{self.published_after[-1]:.2f} s, trigger decided "
            f"+{self.next_trigger[-1]:.2f} s, readable +{self.readable_after[-1]:.2f} s"
        )

    def record(self, report: ChaosReport, worker_exits: int) -> None:
        report.record(ROUNDS_FAULT, "restarts", RESTARTS)
        for how, seconds in self.down_for.items():
            report.record(ROUNDS_FAULT, f"broker down ({how}), median", median(seconds))
            report.record(ROUNDS_FAULT, f"broker down ({how}), max", max(seconds))
        report.record(ROUNDS_FAULT, "/ready 200 after broker back, max", max(self.ready_again))
        trigger = self.next_trigger
        report.record(ROUNDS_FAULT, "next trigger after broker back, median", median(trigger))
        report.record(ROUNDS_FAULT, "next trigger after broker back, max", max(trigger))
        report.record(
            ROUNDS_FAULT, "next trigger after each restart", " ".join(f"{s:.2f}" for s in trigger)
        )
        report.record(
            ROUNDS_FAULT, "probe published after broker back, max", max(self.published_after)
        )
        report.record(
            ROUNDS_FAULT, "trigger readable after broker back, max", max(self.readable_after)
        )
        report.record(ROUNDS_FAULT, "worker exits", worker_exits)


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
        settings = worker_settings(kafka.url, unique_prefix, tmp_path / "worker-data")
        await ensure_topics(settings)
        worker = start_worker(settings, restart_on_exit=True)
        await asyncio.to_thread(worker.wait_ready, 180.0)
        registry = load_registry(None)
        today = datetime.now(ZoneInfo(settings.pipeline_timezone)).date()
        dates = iter(today - timedelta(days=n) for n in range(1, RESTARTS * (IN_FLIGHT + 1) + 1))
        published: list[date] = []
        triggers: list[PhaseTrigger] = []
        rounds = Rounds()

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
                rounds.down_for[fault.how].append(up_at - down_at)
                probe = await publish_day(publisher)
                rounds.published_after.append(time.monotonic() - up_at)

                def probe_fired(got: list[PhaseTrigger], day: date = probe) -> bool:
                    return any(t.game_date == day for t in got)

                found = await reader.read_until(probe_fired, give_up_after=120)
                rounds.readable_after.append(time.monotonic() - up_at)
                triggers += found
                fired = [t for t in found if t.game_date == probe]
                assert fired, f"no trigger for {probe} after restart {round_ + 1}\n{worker.tail()}"
                rounds.next_trigger.append((fired[0].triggered_at - up_wall).total_seconds())
                print(rounds.line(round_ + 1, fault.how, up_wall, probe))
                answers = watch.answers_between(down_at, up_at)
                assert False in answers, f"/ready never said 503 in restart {round_ + 1}"
                rounds.ready_again.append(await watch.ready_after(up_at, give_up_after=120))
            triggers += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=4)
        await wait_until_committed(settings, give_up_after=120)  # every completion processed
        assert_one_trigger_per_phase(triggers, {(day, 3) for day in published}, strict=True)
        assert worker.restarts == 0, f"the worker exited {worker.restarts} time(s)\n{worker.tail()}"
    rounds.record(chaos_report, worker.restarts)
