"""The processors' client on a real broker: what it writes, and that the worker acts on it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from phaseflow.models.codec import decode
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.client import ClientSettings, CompletionPublisher
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.simulation import TriggerReader, make_completion
from tests.fixtures.brokers import Broker

README = Path(__file__).resolve().parents[2] / "README.md"
GAME_DATE = date(2026, 1, 15)
PHASE2_REQUIRED = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]


async def read_records(bootstrap: str, topic: str, *, want: int) -> list[ConsumerRecord]:
    """The first ``want`` records of ``topic``, all partitions from the start (no group)."""
    consumer = kafka_clients.consumer(
        KafkaEndpoint(bootstrap), topic, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: list[ConsumerRecord] = []
        async with asyncio.timeout(60):
            while len(found) < want:
                batches = await consumer.getmany(timeout_ms=1000)
                found.extend(record for batch in batches.values() for record in batch)
        return found
    finally:
        await consumer.stop()


async def test_the_client_publishes_checked_completions_keyed_by_game_date(
    broker: Broker, make_settings: Callable[..., Settings]
) -> None:
    await ensure_topics(make_settings())  # the worker creates the topics in production
    client_settings = ClientSettings(
        broker_url=broker.url, topic_prefix=make_settings().topic_prefix
    )
    async with CompletionPublisher(client_settings) as publisher:
        sent = await publisher.publish(
            {
                "processor_name": "p2_odds_game_lines",
                "game_date": "2026-01-15",
                "phase": 2,
                "status": "success",
                "record_count": 412,
                "execution_id": "run-7",
                "timestamp": "2026-01-15T12:00:00Z",
            }
        )
        # auto: the idempotent producer where the broker has one (Kafka), none on Tansu
        assert publisher.idempotent is broker.supports_transactions
    await publisher.stop()  # a second stop is harmless
    topic = client_settings.topic(TopicName.PHASE_COMPLETIONS)
    [record] = await read_records(broker.bootstrap, topic, want=1)
    assert record.key == b"2026-01-15"
    assert record.value is not None
    assert decode(PhaseCompletion, record.value) == sent
    assert (sent.execution_id, sent.record_count) == ("run-7", 412)


async def test_a_worker_fires_the_next_phase_from_client_published_completions(
    broker: Broker,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    worker = start_worker(settings)
    client_settings = ClientSettings(broker_url=broker.url, topic_prefix=settings.topic_prefix)
    async with CompletionPublisher(client_settings) as publisher:
        for name in PHASE2_REQUIRED:
            await publisher.publish(make_completion(name, GAME_DATE, 2))
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(
            lambda found: len(found) >= 1, give_up_after=120, quiet_for=3.0
        )
    assert [(t.game_date, t.phase, t.reason) for t in triggers] == [(GAME_DATE, 3, "ready")]
    assert sorted(triggers[0].completed) == sorted(PHASE2_REQUIRED)


def readme_example() -> str:
    """The Python block of the README section "Publishing completions from a processor"."""
    section = README.read_text().split("## Publishing completions from a processor", 1)[1]
    found = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    assert found is not None, "the README section has no python example"
    return found.group(1)


async def test_the_readme_example_publishes_as_documented(
    broker: Broker, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    monkeypatch.setenv("PHASEFLOW_BROKER_URL", broker.url)
    monkeypatch.setenv("PHASEFLOW_TOPIC_PREFIX", settings.topic_prefix)
    example: dict[str, Any] = {}
    exec(compile(readme_example(), str(README), "exec"), example)  # noqa: S102 -- our README
    await example["report_done"]("p2_odds_game_lines", "2026-01-15", 2, "readme-run", 412)
    topic = settings.topic(TopicName.PHASE_COMPLETIONS)
    [record] = await read_records(broker.bootstrap, topic, want=1)
    assert record.key == b"2026-01-15"
    assert record.value is not None
    event = decode(PhaseCompletion, record.value)
    assert (event.execution_id, event.record_count, event.phase) == ("readme-run", 412, 2)
