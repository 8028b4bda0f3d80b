"""The processors' client (phaseflow.streams.client): light imports, settings, checks before
sending."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from phaseflow.models.events import PhaseCompletion
from phaseflow.streams import publish as publish_command
from phaseflow.streams.broker_probe import BrokerProbeError
from phaseflow.streams.client import (
    BrokerUnavailableError,
    ClientSettings,
    CompletionPublisher,
    IdempotenceUnavailableError,
    InvalidCompletionError,
    validate_completion,
)
from phaseflow.streams.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
#: Nothing listens on port 1: connecting is refused at once.
NOBODY_LISTENS = "127.0.0.1:1"

_IMPORTS_OF_THE_CLIENT = """
import sys
import phaseflow.client
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("faust", "mode")
    or name == "google.cloud.bigquery" or name.startswith("google.cloud.bigquery.")
    or name == "phaseflow.streams.core.settings"
)
print(",".join(heavy))
"""


def completion_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "processor_name": "p2_odds_game_lines",
        "game_date": "2026-01-15",
        "phase": 2,
        "status": "success",
        "record_count": 412,
        "execution_id": "run-1",
        "timestamp": datetime(2026, 1, 15, 12, tzinfo=UTC).isoformat(),
    }
    data.update(changes)
    return data


def test_importing_the_client_loads_neither_faust_nor_bigquery_nor_the_worker_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_OF_THE_CLIENT],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""


def test_the_client_reads_the_workers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_BROKER_URL", "kafka://kafka-1:9092;kafka://kafka-2:9092")
    monkeypatch.setenv("PHASEFLOW_TOPIC_PREFIX", "nba-prod")
    monkeypatch.setenv("PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE", "false")
    monkeypatch.setenv("PHASEFLOW_WEB_PORT", "7000")  # a worker setting: ignored, not an error
    client = ClientSettings()
    assert client.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert client.kafka_producer_idempotence is False
    publisher = CompletionPublisher(client)
    assert publisher.topic == "nba-prod.phase-completions"
    worker = Settings()
    assert (worker.bootstrap_servers, worker.topic_prefix) == (
        client.bootstrap_servers,
        client.topic_prefix,
    )
    assert CompletionPublisher(worker).topic == publisher.topic


def test_client_settings_default_to_the_local_broker_and_are_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BROKER_URL", "TOPIC_PREFIX", "KAFKA_PRODUCER_IDEMPOTENCE"):
        monkeypatch.delenv(f"PHASEFLOW_{name}", raising=False)
    client = ClientSettings()
    assert (client.bootstrap_servers, client.topic_prefix, client.kafka_producer_idempotence) == (
        "127.0.0.1:9092",
        "phaseflow",
        "auto",
    )
    with pytest.raises(ValidationError):
        client.topic_prefix = "other"  # type: ignore[misc]


def test_phaseflow_publish_sends_through_the_client() -> None:
    assert publish_command.CompletionPublisher is CompletionPublisher  # one way to publish


def test_a_valid_mapping_becomes_the_completion_keyed_by_its_date() -> None:
    event = validate_completion(completion_data())
    assert (event.game_date, event.phase, event.key) == (date(2026, 1, 15), 2, "2026-01-15")


def test_an_invalid_completion_names_each_field_in_one_line() -> None:
    with pytest.raises(InvalidCompletionError) as caught:
        validate_completion(completion_data(game_date="15/01/2026", status="done"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("not a valid PhaseCompletion: ")
    assert "game_date: " in message
    assert "status: " in message


def test_a_model_built_without_checks_is_checked_again() -> None:
    unchecked = PhaseCompletion.model_construct(**completion_data(record_count=-5))
    with pytest.raises(InvalidCompletionError, match="record_count"):
        validate_completion(unchecked)


async def test_invalid_input_is_refused_before_the_publisher_needs_a_broker() -> None:
    publisher = CompletionPublisher(ClientSettings(broker_url=NOBODY_LISTENS))
    with pytest.raises(InvalidCompletionError, match="phase"):
        await publisher.publish(completion_data(phase=9))


async def test_publishing_before_start_says_how_to_start() -> None:
    publisher = CompletionPublisher(ClientSettings(broker_url=NOBODY_LISTENS))
    with pytest.raises(RuntimeError, match="async with"):
        await publisher.publish(completion_data())


async def test_stop_is_idempotent_without_a_start() -> None:
    publisher = CompletionPublisher(ClientSettings(broker_url=NOBODY_LISTENS))
    await publisher.stop()
    await publisher.stop()


async def test_an_unreachable_broker_is_one_line_naming_the_address_and_the_variable() -> None:
    settings = ClientSettings(broker_url=NOBODY_LISTENS, kafka_producer_idempotence=False)
    with pytest.raises(BrokerUnavailableError) as caught:
        async with CompletionPublisher(settings, connect_timeout=5):
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert NOBODY_LISTENS in message
    assert "PHASEFLOW_BROKER_URL" in message


async def test_idempotence_false_never_asks_the_broker() -> None:
    async def must_not_probe(servers: str, within: float) -> bool:
        raise AssertionError("probed although idempotence is off")

    settings = ClientSettings(broker_url=NOBODY_LISTENS, kafka_producer_idempotence=False)
    with pytest.raises(BrokerUnavailableError):
        await CompletionPublisher(settings, connect_timeout=5, probe=must_not_probe).start()


async def test_idempotence_true_on_a_broker_without_it_stops_at_start() -> None:
    asked: list[tuple[str, float]] = []

    async def without_idempotence(servers: str, within: float) -> bool:
        asked.append((servers, within))
        return False

    settings = ClientSettings(broker_url=NOBODY_LISTENS, kafka_producer_idempotence=True)
    publisher = CompletionPublisher(settings, connect_timeout=3, probe=without_idempotence)
    with pytest.raises(IdempotenceUnavailableError, match="PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE"):
        await publisher.start()
    assert asked == [(NOBODY_LISTENS, 3)]
    assert publisher.idempotent is None


async def test_a_probe_without_an_answer_is_an_unreachable_broker() -> None:
    async def no_answer(servers: str, within: float) -> bool:
        raise BrokerProbeError(f"cannot reach the broker at {servers}: TimeoutError()")

    settings = ClientSettings(broker_url=NOBODY_LISTENS)
    with pytest.raises(BrokerUnavailableError, match="PHASEFLOW_BROKER_URL"):
        await CompletionPublisher(settings, probe=no_answer).start()
