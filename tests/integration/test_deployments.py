"""Deployment identity and the delivery guarantee against real brokers, with default settings.

Two deployments (two topic prefixes, app id left at its default) on one broker must share no
state: each fires its own triggers exactly once and reads only its own topics. The worker asks
the broker what it supports and picks the guarantee (``auto``); an explicit setting the broker
cannot honour stops it with exit status 2 and one line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from phaseflow.models.events import RerunRequest
from phaseflow.streams.broker_probe import probe_broker
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.tansu import TANSU_FAUST_TUNING, TansuBroker
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.monitoring.lag_sampler import LagSampler
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion
from tests.integration.test_first_path import PHASE2_REQUIRED
from tests.integration.test_readiness_faults import SHORT_DEADLINES

DATES = (date(2026, 3, 1), date(2026, 3, 2))


async def committed_topics(settings: Settings, group: str) -> set[str]:
    """Topics ``group`` committed offsets for (LagSampler: it also gets them from Tansu)."""
    async with LagSampler(settings) as sampler:
        return {tp.topic for tp in await sampler.committed(group)}


async def all_topics(settings: Settings) -> set[str]:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_two_deployments_on_one_broker_share_nothing(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    first, second = (
        make_settings(
            deployment_defaults=True,
            topic_prefix=f"{unique_prefix}-{name}",
            data_dir=tmp_path / f"data-{name}",
        )
        for name in ("a", "b")
    )
    assert (first.app_id, second.app_id) == (first.topic_prefix, second.topic_prefix)
    for settings in (first, second):
        await ensure_topics(settings)
    # The first deployment works through a date before the second exists: its changelog then
    # holds a fired trigger the second must not restore.
    worker_a = start_worker(first)
    await asyncio.to_thread(worker_a.wait_ready, 120.0)
    async with CompletionPublisher(first) as publisher:
        for name in PHASE2_REQUIRED:
            await publisher.publish(make_completion(name, DATES[0], 2))
    async with TriggerReader(first) as reader:
        await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
    worker_b = start_worker(second)
    await asyncio.to_thread(worker_b.wait_ready, 120.0)
    # Same registry, same game dates, interleaved between the two deployments.
    async with CompletionPublisher(first) as to_a, CompletionPublisher(second) as to_b:
        for game_date in DATES:
            for name in PHASE2_REQUIRED:
                await to_b.publish(make_completion(name, game_date, 2))
                await to_a.publish(make_completion(name, game_date, 2))

    for settings, worker in ((first, worker_a), (second, worker_b)):
        async with TriggerReader(settings) as reader:
            triggers = await reader.read_until(
                lambda found: len(found) >= len(DATES), give_up_after=90, quiet_for=3.0
            )
        fired = Counter((t.game_date, t.phase) for t in triggers)
        assert fired == {(DATES[0], 3): 1, (DATES[1], 3): 1}, (settings.topic_prefix, fired)
        log = await asyncio.to_thread(worker.log_path.read_text, errors="replace")
        assert (
            f"deployment identity '{settings.app_id}' (derived from PHASEFLOW_TOPIC_PREFIX)" in log
        )
    for own, other in ((first, second), (second, first)):
        topics = await committed_topics(own, own.app_id)
        assert topics, f"group {own.app_id} committed nothing"
        assert all(topic.startswith(own.topic_prefix + ".") for topic in topics), topics
        assert not any(topic.startswith(other.topic_prefix) for topic in topics)
    names = await all_topics(first)
    for settings in (first, second):
        assert f"{settings.app_id}-readiness-changelog" in names


async def test_the_probe_finds_what_the_session_broker_supports(
    make_settings: Callable[..., Settings], broker: Any
) -> None:
    capabilities = await probe_broker(make_settings(deployment_defaults=True))
    assert capabilities.transactions.supported is broker.supports_transactions
    assert capabilities.idempotent_producer.supported is broker.supports_transactions


async def test_defaults_pick_the_guarantee_the_broker_supports_and_show_it(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
    broker: Any,
) -> None:
    settings = make_settings(deployment_defaults=True)
    assert (settings.processing_guarantee, settings.kafka_producer_idempotence) == ("auto", "auto")
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with client_for(settings).get("/status") as response:
        deployment = (await response.json())["deployment"]
    expected = "exactly_once" if broker.supports_transactions else "at_least_once"
    assert deployment["processing_guarantee"] == expected
    assert deployment["idempotent_producer"] is broker.supports_transactions
    assert deployment["app_id"] == settings.topic_prefix
    assert deployment["guarantee_reason"].startswith("auto: ")
    log = await asyncio.to_thread(worker.log_path.read_text, errors="replace")
    assert log.count(f"processing guarantee {expected}") == 1


def tansu_settings(
    own: TansuBroker, make_settings: Callable[..., Settings], **extra: Any
) -> Settings:
    return make_settings(
        deployment_defaults=True,
        broker_url=own.url,
        kafka_session_timeout_seconds=TANSU_FAUST_TUNING["broker_session_timeout"],
        kafka_heartbeat_interval_seconds=TANSU_FAUST_TUNING["broker_heartbeat_interval"],
        **extra,
    )


def run_worker_until_exit(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phaseflow.streams.cli", "worker"],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_explicit_setting_the_broker_cannot_honour_exits_2_naming_it(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Its own Tansu (no idempotent producer, no transactions) whatever the session broker is.
    with TansuBroker(log_dir=tmp_path / "tansu") as own:
        for setting, value in (
            ("processing_guarantee", "exactly_once"),
            ("kafka_producer_idempotence", True),
        ):
            settings = tansu_settings(own, make_settings, **{setting: value})
            done = await asyncio.to_thread(run_worker_until_exit, settings)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) >= 1
            last = lines[-1]
            assert last.startswith("phaseflow: error: "), done.stderr
            assert f"PHASEFLOW_{setting.upper()}=" in last
            assert "Traceback" not in done.stderr
            assert not await all_topics(settings), "refused, yet it created topics"


async def test_defaults_on_the_embedded_broker_send_deadline_triggers_and_api_reruns(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
    tmp_path: Path,
) -> None:
    """The day-one report: on Tansu with default settings no deadline trigger, no rerun, and
    ``POST /reruns`` 500. Timer and HTTP sends go out on the side producer, which asked for
    idempotence the broker does not have."""
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(SHORT_DEADLINES)
    with TansuBroker(log_dir=tmp_path / "tansu") as own:
        settings = tansu_settings(
            own,
            make_settings,
            registry_path=registry_path,
            readiness_tick_seconds=0.5,
            api_keys="day-one-key",
        )
        await ensure_topics(settings)
        worker = start_worker(settings)
        await asyncio.to_thread(worker.wait_ready, 120.0)
        game_date = DATES[0]
        http = client_for(settings)
        async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
            for name in ("r1", "r2"):
                await publisher.publish(make_completion(name, game_date, 2))
            for name in ("a", "b"):  # 2 of 3: the 6 s tier fires on a timer tick
                await publisher.publish(make_completion(name, game_date, 3))
            triggers = await reader.read_until(lambda found: len(found) >= 2, give_up_after=60)
            async with http.post(
                "/reruns",
                json={"game_date": game_date.isoformat(), "phase": 3, "processor_name": "c"},
                headers={"X-API-Key": "day-one-key"},
            ) as response:
                assert response.status == 202, await response.text()
        assert [(t.phase, t.reason) for t in triggers] == [(3, "ready"), (4, "timeout")]
        async with TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns:
            found = await reruns.read_until(lambda got: len(got) >= 2, give_up_after=30)
        assert sorted(r.reason for r in found) == ["manual", "missing_at_deadline"]
        # The lag monitor met Tansu's answer to the all-offsets request: one warning line,
        # not aiokafka's traceback.
        log_text = worker.log_path.read_text(errors="replace")
        assert "asking for explicit partitions from now on" in log_text
        assert "Traceback" not in log_text, worker.tail(80)
