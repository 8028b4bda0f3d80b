"""Scale-out: three workers in one consumer group, a fourth added and one killed under load.

Every completion is published twice (a retried publish), the day's dates are spread over the
topic's partitions, and the workers answer each trigger with the next phase's completions the
way processors would. Whatever the rebalances, each (date, phase) fires once: strictly one
trigger record on a broker with transactions, one distinct trigger id otherwise. The test prints
how many completion records each worker consumed and at what rate (scraped from each worker's
``/metrics``).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.ports import free_ports
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, phase_completions
from tests.integration.test_readiness_faults import assert_one_trigger_per_phase

FIRST_DATE = date(2026, 3, 1)
DATES = 24
PARTITIONS = 6


def completions_consumed(port: int, topic: str) -> float | None:
    """The worker's ``phaseflow_events_in_total`` for ``topic``; None while it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "phaseflow_events_in_total" and sample.labels.get("topic") == topic:
                return sample.value
    return 0.0


@dataclass
class WorkerTally:
    """Completions one worker consumed, summed across its process restarts."""

    name: str
    settings: Settings
    process: WorkerProcess
    before_restarts: float = 0.0
    current: float = 0.0
    seen_at: list[float] = field(default_factory=list)

    def sample(self, topic: str) -> None:
        value = completions_consumed(self.settings.web_port, topic)
        if value is None:
            return
        if value < self.current:  # the process restarted: its counter began again
            self.before_restarts += self.current
        self.current = value
        self.seen_at.append(time.monotonic())

    @property
    def total(self) -> float:
        return self.before_restarts + self.current


async def test_three_workers_then_one_added_and_one_killed_fire_each_phase_once(
    make_settings: Callable[..., Settings],
    start_worker: Callable[..., WorkerProcess],
    broker: Any,
    tmp_path: Path,
) -> None:
    common: dict[str, Any] = {"kafka_topic_partitions": PARTITIONS}
    if broker.kind != "tansu":  # Kafka's minimum session timeout: a dead member leaves in 6 s
        common |= {"kafka_session_timeout_seconds": 6.0, "kafka_heartbeat_interval_seconds": 1.0}
    base = make_settings(**common, data_dir=tmp_path / "w0")
    await ensure_topics(base)
    topic = base.topic(TopicName.PHASE_COMPLETIONS)

    ports = [base.web_port, *free_ports(3, besides=[base.web_port])]

    def launch(index: int) -> WorkerTally:
        settings = base.model_copy(
            # A free port each: the first one's neighbours can be any socket's.
            update={"data_dir": tmp_path / f"w{index}", "web_port": ports[index]}
        )
        # Supervised as in production: a worker that exits is restarted; it rebuilds its
        # tables from the changelogs.
        return WorkerTally(
            f"worker-{index}", settings, start_worker(settings, restart_on_exit=True)
        )

    tallies = [launch(index) for index in range(3)]
    for tally in tallies:
        await asyncio.to_thread(tally.process.wait_ready, 180.0)

    registry = load_registry(None)
    dates = [FIRST_DATE + timedelta(days=offset) for offset in range(DATES)]
    today = dates[-1] + timedelta(days=1)
    expected = {(day, phase) for day in dates for phase in (3, 4, 5, 6)}
    added = killed = False
    started = time.monotonic()
    async with (
        CompletionPublisher(base) as publisher,
        TriggerReader(base) as reader,
    ):

        async def publish_twice(day: date, phase: int) -> None:
            for event in phase_completions(registry, day, phase, today=today):
                await publisher.publish(event)
                await publisher.publish(event)  # a retried publish: same execution_id

        for phase in (1, 2):
            for day in dates:
                await publish_twice(day, phase)
        triggers: list[PhaseTrigger] = []
        answered: set[tuple[date, int]] = set()
        deadline = asyncio.get_running_loop().time() + 240
        while {(t.game_date, t.phase) for t in triggers} != expected:
            assert asyncio.get_running_loop().time() < deadline, (
                f"stuck: {sorted(expected - {(t.game_date, t.phase) for t in triggers})}\n"
                + "\n".join(t.process.tail(15) for t in tallies)
            )
            for trigger in await reader.read(0.25):
                triggers.append(trigger)
                key = (trigger.game_date, trigger.phase)
                if key not in answered:
                    answered.add(key)
                    await publish_twice(trigger.game_date, trigger.phase)
            for tally in tallies:
                await asyncio.to_thread(tally.sample, topic)
            if not added and len(answered) >= len(expected) // 4:
                tallies.append(launch(3))  # scale out under load: a rebalance
                added = True
            if added and not killed and len(answered) >= len(expected) // 2:
                tallies[0].process.kill()  # kill -9 one of the first three
                killed = True
        triggers += await reader.read_until(lambda _: False, give_up_after=0, quiet_for=4)
    elapsed = time.monotonic() - started
    for tally in tallies[1:]:
        await asyncio.to_thread(tally.sample, topic)

    assert added
    assert killed
    print(f"\n{len(expected)} phases fired over {elapsed:.1f} s; completions consumed per worker:")
    for tally in tallies:
        print(
            f"  {tally.name}: {tally.total:>6.0f} records, {tally.total / elapsed:>7.1f}/s, "
            f"restarts {tally.process.restarts}"
        )
    assert_one_trigger_per_phase(triggers, expected, strict=broker.supports_transactions)
    # The load was shared: at least two workers consumed completions.
    assert sum(1 for tally in tallies if tally.total > 0) >= 2
