"""Static membership: the worker id, what Faust's consumer is built with, the duplicate check."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.worker_identity import Member, conflict, worker_id_problem, worker_url

SETTINGS = Settings(topic_prefix="pf", worker_id="host-a", web_port=6070)
OWN_HOST = "10.0.0.5"


def member(instance_id: str, host: str, url: str | None) -> Member:
    user_data = b"" if url is None else orjson.dumps({"url": url, "assignment": {}})
    metadata = ConsumerProtocolMemberMetadata(0, ["t"], user_data).encode()
    return Member(f"{instance_id}-{uuid.uuid4()}", f"/{host}", metadata)


def test_the_default_id_is_stable_per_data_directory_and_differs_between_them(
    tmp_path: Path,
) -> None:
    one = Settings(topic_prefix="pf", data_dir=tmp_path / "one")
    assert one.worker_id == Settings(topic_prefix="pf", data_dir=tmp_path / "one").worker_id
    assert one.worker_id != Settings(topic_prefix="pf", data_dir=tmp_path / "two").worker_id
    # A worker started as a child process derives its own (from its own data_dir).
    assert "PHASEFLOW_WORKER_ID" not in settings_to_env(one)
    assert settings_to_env(SETTINGS)["PHASEFLOW_WORKER_ID"] == "host-a"


async def test_fausts_consumer_joins_as_a_static_member_with_the_configured_fetch_wait(
    tmp_path: Path,
) -> None:
    settings = Settings(
        topic_prefix="pf",
        data_dir=tmp_path,
        worker_id="w-1",
        kafka_fetch_wait_seconds=0.05,
        kafka_static_membership=True,
    )
    app: Any = build_app(settings).app
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert consumer._group_instance_id == "w-1"
    assert consumer._fetch_max_wait_ms == 50


def test_static_membership_is_on_by_default(tmp_path: Path) -> None:
    settings = Settings(topic_prefix="pf", data_dir=tmp_path, worker_id="w-1")
    assert settings.kafka_static_membership
    assert settings.group_instance_id == "w-1"


async def test_without_static_membership_the_consumers_are_dynamic_members(tmp_path: Path) -> None:
    settings = Settings(
        topic_prefix="pf", data_dir=tmp_path, worker_id="w-1", kafka_static_membership=False
    )
    assert settings.group_instance_id is None
    app: Any = build_app(settings).app
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert consumer._group_instance_id is None


def test_our_killed_predecessor_is_no_conflict() -> None:
    members = [member("host-a", OWN_HOST, worker_url(SETTINGS)), member("host-b", "10.0.0.6", None)]
    assert conflict(SETTINGS, members, OWN_HOST) is None


def test_a_worker_with_our_id_elsewhere_or_on_another_port_is_named_in_one_line() -> None:
    elsewhere = conflict(SETTINGS, [member("host-a", "10.0.0.9", worker_url(SETTINGS))], OWN_HOST)
    assert elsewhere is not None
    assert "PHASEFLOW_WORKER_ID=host-a" in elsewhere
    assert "10.0.0.9" in elsewhere
    assert "\n" not in elsewhere
    other_port = conflict(SETTINGS, [member("host-a", OWN_HOST, "http://127.0.0.1:7000")], OWN_HOST)
    assert other_port is not None
    assert "http://127.0.0.1:7000" in other_port


def test_an_id_that_merely_starts_with_ours_is_another_id() -> None:
    assert conflict(SETTINGS, [member("host-a-2", "10.0.0.9", None)], OWN_HOST) is None


async def test_a_group_that_cannot_be_described_does_not_stop_the_worker_but_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def unreachable(_settings: Settings) -> list[Member]:
        raise OSError("connection refused")

    assert await worker_id_problem(SETTINGS, members=unreachable) is None
    assert "could not check that PHASEFLOW_WORKER_ID is unused" in caplog.text


async def test_no_member_with_our_id_needs_no_address() -> None:
    async def others(_settings: Settings) -> list[Member]:
        return [member("host-b", "10.0.0.6", None)]

    assert await worker_id_problem(SETTINGS, members=others) is None
