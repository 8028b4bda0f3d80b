"""Static membership (``PHASEFLOW_WORKER_ID``): two workers in one group on Apache Kafka.

One test, three stages on the same two workers (each worker start costs seconds):
1. a third worker started with the first one's id stops at start-up, exit 2, one line;
2. the first worker killed (kill -9) and started again at once rejoins with its partitions and
   the second worker does not rebalance; triggers still fire; the assignment it gets back (the
   one the broker stored) names every table's changelog in its topic groups (a changelog
   missing there made faust-streaming crash on the first write to it);
3. killed again and not restarted: the second worker takes every partition once the first one's
   session has timed out.
Each worker prints one ready line per assignment it received (READY_LINE), which is how the
test sees rebalances.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from phaseflow.streams.app import build_app
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, phase_completions
from phaseflow.streams.worker import READY_LINE

# Static membership is Apache Kafka's; the marker keeps the test off Tansu.
pytestmark = pytest.mark.transactions

PARTITIONS = 4
# Long enough that a worker restarted at once on a loaded 2-core machine is back within it.
SESSION_SECONDS = 20.0


def last_assignment(worker: WorkerProcess) -> int:
    found = re.findall(rf"{READY_LINE} partitions=(\d+)", worker.log_path.read_text())
    return int(found[-1])


async def triggered(settings: Settings, first: date, days: int) -> set[date]:
    """Publish phase 2 of ``days`` dates from ``first``; the dates whose trigger came."""
    wanted = {first + timedelta(days=n) for n in range(days)}
    registry = load_registry(None)
    async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
        for day in sorted(wanted):
            for event in phase_completions(registry, day, 2, today=day):
                await publisher.publish(event)
        found = await reader.read_until(
            lambda got: wanted <= {t.game_date for t in got}, give_up_after=120
        )
    return wanted & {t.game_date for t in found}


async def stored_topic_groups(settings: Settings) -> dict[str, set[str]]:
    """Per member of the app's group: the topics of the topic groups in its stored assignment
    (Faust's assignor metadata, as DescribeGroups returns it)."""
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        responses: list[Any] = await admin.describe_consumer_groups([settings.app_id])
    finally:
        await admin.close()
    found: dict[str, set[str]] = {}
    for response in responses:
        for group in response.groups:
            for member in group[5]:
                user_data = ConsumerProtocolMemberAssignment.decode(member[4]).user_data
                found[member[0]] = set(orjson.loads(zlib.decompress(user_data))["topic_groups"])
    return found


async def test_a_restarted_worker_keeps_its_partitions_and_ids_are_unique(
    make_settings: Callable[..., Settings], start_worker: Callable[..., WorkerProcess]
) -> None:
    base = make_settings(
        kafka_topic_partitions=PARTITIONS,
        kafka_session_timeout_seconds=SESSION_SECONDS,
        kafka_heartbeat_interval_seconds=1.0,
        kafka_static_membership=True,
    )
    await ensure_topics(base)
    first_settings = base.model_copy(update={"worker_id": "worker-one"})
    second_settings = base.model_copy(update={"worker_id": "worker-two", "web_port": free_port()})
    first = start_worker(first_settings)
    await asyncio.to_thread(first.wait_ready, 180.0)
    everything = last_assignment(first)  # every partition of every topic the app reads
    second = start_worker(second_settings)
    await asyncio.to_thread(second.wait_ready, 180.0)
    # The first worker's share after the second joined.
    await asyncio.to_thread(first.wait_ready, 180.0, after=1)

    # 1. Another worker with the first one's id (its own web port) stops before joining.
    duplicate = base.model_copy(update={"worker_id": "worker-one", "web_port": free_port()})
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "phaseflow.streams.cli", "worker"],
        env={**os.environ, **settings_to_env(duplicate)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    complaint = [line for line in done.stderr.splitlines() if "PHASEFLOW_WORKER_ID" in line]
    assert len(complaint) == 1, done.stderr[-2000:]
    assert "worker-one is already used by a running worker" in complaint[0]
    assert "Traceback" not in done.stderr

    # 2. kill -9 and an immediate restart: same partitions back, no rebalance of the other.
    owned = last_assignment(first)
    second_ready = second.ready_count()
    first_ready = first.ready_count()
    first.kill()
    first.start()
    await asyncio.to_thread(first.wait_ready, 180.0, after=first_ready)
    assert last_assignment(first) == owned
    changelogs = set(build_app(base).app.tables.changelog_topics)
    groups = await stored_topic_groups(base)
    assert len(groups) == 2
    for member_id, topics in groups.items():
        assert changelogs <= topics, f"{member_id}: no topic group for {changelogs - topics}"
    assert await triggered(base, date(2031, 1, 1), PARTITIONS * 2) == {
        date(2031, 1, 1) + timedelta(days=n) for n in range(PARTITIONS * 2)
    }
    assert second.ready_count() == second_ready, f"the other worker rebalanced:\n{second.tail()}"

    # 3. Killed and not restarted: replaced once its session times out.
    first.kill()
    await asyncio.to_thread(second.wait_ready, 180.0, after=second_ready)
    assert last_assignment(second) == everything
