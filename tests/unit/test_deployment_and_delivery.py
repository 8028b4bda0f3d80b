"""Deployment identity (app id from the topic prefix), the delivery rule (auto guarantee and
idempotence from the broker's capabilities) and 503 for dependency failures in web views."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from aiokafka.errors import ConcurrentTransactions, KafkaConnectionError, UnknownError
from google.api_core.exceptions import ServiceUnavailable

from phaseflow.streams.app import build_app
from phaseflow.streams.broker_probe import (
    BrokerCapabilities,
    BrokerProbeError,
    Capability,
    ask_until_final,
    probe_broker,
    probe_transactional_id,
)
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.deployment import identity_line
from phaseflow.streams.core.settings import Settings, settings_table, settings_to_env
from phaseflow.streams.delivery import DeliverySettingError, resolve_delivery
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.status import format_status
from phaseflow.streams.web.dependency_errors import dependency_failure
from phaseflow.streams.web.status_summary import StatusSummary
from phaseflow.streams.web.views import RerunsView
from tests.unit.test_status_page import full_summary

KAFKA = BrokerCapabilities(
    idempotent_producer=Capability(supported=True, detail="InitProducerId answered a producer id"),
    transactions=Capability(supported=True, detail="InitProducerId answered a producer id"),
)
TANSU = BrokerCapabilities(
    idempotent_producer=Capability(supported=False, detail="InitProducerId answered UnknownError"),
    transactions=Capability(supported=False, detail="InitProducerId answered UnknownError"),
)


# --- deployment identity -----------------------------------------------------------------------


def test_the_app_id_defaults_to_the_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_TOPIC_PREFIX", "league-b")
    monkeypatch.delenv("PHASEFLOW_APP_ID", raising=False)
    settings = Settings()
    assert settings.app_id == "league-b"
    assert settings.prediction_workers_group == "league-b.prediction-workers"
    assert Settings().app_id == Settings(topic_prefix="league-b").app_id
    assert Settings(topic_prefix="a").app_id != Settings(topic_prefix="b").app_id


def test_an_explicit_app_id_wins_and_the_log_line_says_where_it_came_from() -> None:
    explicit = Settings(topic_prefix="league-b", app_id="shared")
    assert explicit.app_id == "shared"
    assert "'shared' (set by PHASEFLOW_APP_ID)" in identity_line(explicit)
    derived = Settings(topic_prefix="league-b")
    line = identity_line(derived)
    assert "'league-b' (derived from PHASEFLOW_TOPIC_PREFIX)" in line
    assert "topics league-b.*" in line


def test_a_child_process_derives_the_app_id_itself_unless_it_was_set() -> None:
    assert "PHASEFLOW_APP_ID" not in settings_to_env(Settings(topic_prefix="x"))
    assert settings_to_env(Settings(topic_prefix="x", app_id="y"))["PHASEFLOW_APP_ID"] == "y"


def test_the_probe_transactional_id_is_inside_the_deployment_namespace() -> None:
    assert probe_transactional_id(Settings(topic_prefix="league-b")).startswith("league-b-")


def test_faust_names_changelogs_and_transactional_ids_from_the_derived_identity(
    tmp_path: Path,
) -> None:
    ctx = build_app(Settings(topic_prefix="league-b", data_dir=tmp_path))
    assert ctx.app.conf.id == "league-b"
    assert ctx.app.tables["readiness"].changelog_topic.get_topic_name() == (
        "league-b-readiness-changelog"
    )


def test_the_settings_table_shows_the_derived_default() -> None:
    row = next(line for line in settings_table().splitlines() if "PHASEFLOW_APP_ID" in line)
    assert "(derived)" in row


# --- delivery rule ---------------------------------------------------------------------------


def test_auto_runs_exactly_once_with_idempotence_where_transactions_work() -> None:
    delivery = resolve_delivery(Settings(), KAFKA)
    assert delivery.settings.processing_guarantee == "exactly_once"
    assert delivery.settings.idempotent_producer is True
    assert delivery.settings.faust_processing_guarantee == "exactly_once"
    assert delivery.reason.startswith("auto: the broker supports transactions")


def test_auto_runs_at_least_once_without_idempotence_on_a_broker_without_them() -> None:
    delivery = resolve_delivery(Settings(), TANSU)
    assert delivery.settings.processing_guarantee == "at_least_once"
    assert delivery.settings.kafka_producer_idempotence is False
    assert "no transactions (InitProducerId answered UnknownError)" in delivery.reason


def test_explicit_settings_the_broker_supports_are_kept() -> None:
    settings = Settings(processing_guarantee="at_least_once", kafka_producer_idempotence=False)
    delivery = resolve_delivery(settings, KAFKA)
    assert delivery.settings.processing_guarantee == "at_least_once"
    assert delivery.settings.kafka_producer_idempotence is False
    assert "PHASEFLOW_PROCESSING_GUARANTEE=at_least_once" in delivery.reason


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("processing_guarantee", "exactly_once", "PHASEFLOW_PROCESSING_GUARANTEE=exactly_once"),
        ("kafka_producer_idempotence", True, "PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE=true"),
    ],
)
def test_an_explicit_setting_the_broker_cannot_honour_is_refused_in_one_line(
    setting: str, value: Any, named: str
) -> None:
    with pytest.raises(DeliverySettingError) as raised:
        resolve_delivery(Settings(**{setting: value}), TANSU)
    message = str(raised.value)
    assert message.startswith(named)
    assert "\n" not in message
    assert "UnknownError" in message


def test_unresolved_auto_never_asks_a_broker_for_what_it_may_lack() -> None:
    settings = Settings()
    assert (settings.processing_guarantee, settings.kafka_producer_idempotence) == ("auto", "auto")
    assert settings.idempotent_producer is False
    assert settings.faust_processing_guarantee == "at_least_once"


def test_auto_and_booleans_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE", "true")
    assert Settings().kafka_producer_idempotence is True
    monkeypatch.setenv("PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE", "auto")
    assert Settings().kafka_producer_idempotence == "auto"
    monkeypatch.setenv("PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE", "false")
    assert Settings().kafka_producer_idempotence is False


# --- dependency failures are 503 ----------------------------------------------------------------


def test_dependency_failures_are_recognised_through_their_cause() -> None:
    assert "broker" in (dependency_failure(UnknownError()) or "")
    assert "BigQuery" in (dependency_failure(ServiceUnavailable("down")) or "")
    assert dependency_failure(ConnectionResetError("reset")) is not None
    wrapped = RuntimeError("send failed")
    wrapped.__cause__ = KafkaConnectionError("gone")
    assert "KafkaConnectionError" in (dependency_failure(wrapped) or "")
    assert dependency_failure(KeyError("bug")) is None


class RefusingPublisher:
    """A side publisher whose broker refuses every record (Tansu refusing idempotence)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def send(self, *_: Any) -> None:
        raise self.error


async def post_rerun(tmp_path: Path, error: BaseException) -> tuple[int, dict[str, Any]]:
    ctx = build_app(Settings(topic_prefix="pf", data_dir=tmp_path, api_keys="k"))
    ctx.side_publisher = RefusingPublisher(error)  # type: ignore[assignment]
    api = ctx.http_api
    view_class = type("RerunsView", (RerunsView,), {"api": api, "view_path": "/reruns"})
    view = view_class(ctx.app, None)
    body = orjson.dumps(
        {"game_date": "2026-03-01", "phase": 3, "processor_name": "player_game_summary"}
    )
    payload = streams.StreamReader(protocol=_Protocol(), limit=2**16)
    payload.feed_data(body)
    payload.feed_eof()
    request = make_mocked_request(
        "POST",
        "/reruns",
        headers={"X-API-Key": "k", "Content-Length": str(len(body))},
        payload=payload,
    )
    response = await view.dispatch(request)
    return response.status, orjson.loads(response.body)


class _Protocol:
    _reading_paused = False

    def pause_reading(self, **_: Any) -> None: ...

    def resume_reading(self, **_: Any) -> None: ...


async def test_a_broker_refusing_the_record_answers_503_with_the_reason(tmp_path: Path) -> None:
    status, body = await post_rerun(tmp_path, UnknownError())
    assert status == 503
    assert body["error"].startswith("the broker failed the request: UnknownError")


async def test_a_bug_still_answers_500(tmp_path: Path) -> None:
    status, body = await post_rerun(tmp_path, AttributeError("a bug"))
    assert status == 500
    assert body["error"] == "internal error (logged on the worker)"


# --- the probe's answers -----------------------------------------------------------------------


def answers(*codes: int | BaseException) -> Callable[[], Awaitable[int]]:
    """A request returning these error codes (or raising these errors) in turn."""
    pending = list(codes)

    async def request() -> int:
        answer = pending.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return request


def manual_time() -> tuple[ManualClock, Callable[[float], Awaitable[None]]]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))

    async def pause(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return clock, pause


async def test_the_probe_retries_a_loading_coordinator_then_takes_the_answer() -> None:
    clock, pause = manual_time()
    # 14 COORDINATOR_LOAD_IN_PROGRESS, 15 COORDINATOR_NOT_AVAILABLE, then a producer id.
    found = await ask_until_final(
        "transactions",
        answers(14, KafkaConnectionError("reset"), 15, 0),
        clock=clock,
        give_up_at=clock.now() + timedelta(seconds=30),
        pause=pause,
    )
    assert found == Capability(supported=True, detail="InitProducerId answered a producer id")


async def test_a_concurrent_probe_of_another_worker_is_asked_again() -> None:
    # 51 CONCURRENT_TRANSACTIONS: a second worker of the deployment probing at the same moment
    # with the same transactional id; it exited 2 ("does not support transactions") before.
    clock, pause = manual_time()
    found = await ask_until_final(
        "transactions",
        answers(51, ConcurrentTransactions(), 0),
        clock=clock,
        give_up_at=clock.now() + timedelta(seconds=30),
        pause=pause,
    )
    assert found == Capability(supported=True, detail="InitProducerId answered a producer id")


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (-1, "InitProducerId answered UnknownError"),  # Tansu 0.6
        (35, "InitProducerId answered UnsupportedVersionError"),
        (UnknownError(), "UnknownError"),
    ],
)
async def test_a_final_refusal_means_unsupported(answer: int | BaseException, detail: str) -> None:
    clock, pause = manual_time()
    found = await ask_until_final(
        "transactions", answers(answer), clock=clock, give_up_at=clock.now(), pause=pause
    )
    assert found == Capability(supported=False, detail=detail)


async def test_no_final_answer_in_time_fails_the_probe_instead_of_guessing() -> None:
    clock, pause = manual_time()
    with pytest.raises(
        BrokerProbeError, match="about transactions: GroupCoordinatorNotAvailableError"
    ):
        await ask_until_final(
            "transactions",
            answers(*[15] * 100),
            clock=clock,
            give_up_at=clock.now() + timedelta(seconds=5),
            pause=pause,
        )
    assert clock.now() == datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC)


# --- what the user sees ------------------------------------------------------------------------


def test_status_shows_the_identity_and_the_resolved_guarantee(tmp_path: Path) -> None:
    delivery = resolve_delivery(Settings(topic_prefix="league-b", data_dir=tmp_path), KAFKA)
    ctx = build_app(delivery.settings, delivery=delivery)
    assert ctx.app.conf.processing_guarantee.value == "exactly_once"
    body = ctx.http_api.status_summary(None)
    assert body["deployment"] == {
        "app_id": "league-b",
        "app_id_source": "derived from PHASEFLOW_TOPIC_PREFIX",
        "topic_prefix": "league-b",
        "processing_guarantee": "exactly_once",
        "idempotent_producer": True,
        "guarantee_reason": delivery.reason,
    }
    text = format_status(StatusSummary.model_validate({**full_summary(), **body}))
    assert text.splitlines()[1] == (
        "deployment league-b (derived from PHASEFLOW_TOPIC_PREFIX); exactly_once, idempotent "
        f"producers on ({delivery.reason})"
    )


async def test_an_unreachable_broker_fails_the_probe_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    settings = Settings(broker_url=f"kafka://127.0.0.1:{port}")
    with pytest.raises(BrokerProbeError, match=f"cannot reach the broker at 127.0.0.1:{port}"):
        await probe_broker(settings, answer_within=5)
    # The error is the one line: aiokafka's "Unable connect to ..." is held back.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    after = logging.getLogger("aiokafka")
    assert not after.filters  # and only while the probe ran
