"""The CLI's failure layer: known failures are one line on stderr with exit 2 (bad input) or 1
(a service unreachable); publish checks its input against the registry before connecting."""

from __future__ import annotations

import asyncio
import gc
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError
from google.api_core.exceptions import NotFound, RetryError
from google.auth.exceptions import DefaultCredentialsError
from pydantic import ValidationError

from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.cli import main
from phaseflow.streams.cli_errors import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    BadInputError,
    ServiceUnavailableError,
    explain,
    load_settings,
    run_command,
)
from phaseflow.streams.client import BrokerUnavailableError
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.registry import RegistryError, load_registry, parse_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.publish import CompletionPublisher, publish_from_cli, registry_problem
from phaseflow.streams.reachability import require_bigquery, require_broker

CLOSED = f"127.0.0.1:{free_port()}"


@pytest.fixture
def down() -> Settings:
    """Settings whose broker and BigQuery addresses refuse connections."""
    return Settings(broker_url=CLOSED, bigquery_endpoint=f"http://{CLOSED}")


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something accepts TCP connections on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def validation_error() -> ValidationError:
    try:
        PhaseCompletion.model_validate({"processor_name": "x"})
    except ValidationError as error:
        return error
    raise AssertionError


GOOGLE_RETRY = RetryError("Timeout of 30.0s exceeded", None)  # type: ignore[no-untyped-call]
GOOGLE_NO_CREDENTIALS = DefaultCredentialsError("none found")  # type: ignore[no-untyped-call]
GOOGLE_NOT_FOUND = NotFound("dataset nba_predictions")  # type: ignore[no-untyped-call]


# --- the mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "start"),
    [
        (KafkaConnectionError("Unable to bootstrap"), EXIT_UNAVAILABLE, "cannot reach the Kafka"),
        (KafkaTimeoutError(), EXIT_UNAVAILABLE, "cannot reach the Kafka broker"),
        (UnknownTopicOrPartitionError(), EXIT_UNAVAILABLE, "Kafka refused the request"),
        (GOOGLE_RETRY, EXIT_UNAVAILABLE, "cannot reach BigQuery"),
        (GOOGLE_NO_CREDENTIALS, EXIT_UNAVAILABLE, "cannot reach BigQuery"),
        (GOOGLE_NOT_FOUND, EXIT_UNAVAILABLE, "BigQuery refused the request"),
        (ConnectionRefusedError(111, "Connection refused"), EXIT_UNAVAILABLE, "a service is"),
        (RegistryError("my.toml: phases[0].x: bad"), EXIT_BAD_INPUT, "my.toml: phases[0].x"),
        (PermissionError(13, "Permission denied", "/data"), EXIT_BAD_INPUT, "/data: Permission"),
        (validation_error(), EXIT_BAD_INPUT, "invalid PhaseCompletion: game_date: Field required"),
    ],
)
def test_known_failures_map_to_one_message_and_code(
    error: Exception, code: int, start: str, down: Settings
) -> None:
    known = explain(error, down)
    assert known is not None
    assert known.exit_code == code
    assert str(known).startswith(start), str(known)
    assert "\n" not in str(known)


def test_the_broker_message_names_the_address_and_the_setting(down: Settings) -> None:
    known = explain(KafkaConnectionError("Unable to bootstrap"), down)
    assert known is not None
    assert CLOSED in str(known)
    assert "PHASEFLOW_BROKER_URL" in str(known)


def test_a_known_failure_inside_a_wrapper_is_found(down: Settings) -> None:
    def connect() -> None:
        raise KafkaConnectionError("Unable to bootstrap")

    def wrapped() -> None:
        try:
            connect()
        except KafkaConnectionError as inner:
            raise RuntimeError("start failed") from inner

    with pytest.raises(RuntimeError) as caught:
        wrapped()
    known = explain(caught.value, down)
    assert isinstance(known, ServiceUnavailableError)
    grouped = explain(ExceptionGroup("tasks", [ValueError("x"), KafkaTimeoutError()]), down)
    assert isinstance(grouped, ServiceUnavailableError)


def test_run_command_prints_one_line_per_problem_and_returns_the_code() -> None:
    stderr = io.StringIO()

    def failing() -> int:
        raise RegistryError("a.toml: systems: one\na.toml: phases[0].tiers: two")

    assert run_command(failing, settings=lambda: None, stderr=stderr) == EXIT_BAD_INPUT
    assert stderr.getvalue() == (
        "phaseflow: error: a.toml: systems: one\nphaseflow: error: a.toml: phases[0].tiers: two\n"
    )


def test_an_unknown_failure_is_a_bug_and_keeps_its_traceback() -> None:
    def buggy() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_command(buggy, settings=lambda: None, stderr=io.StringIO())


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(BadInputError) as caught:
        load_settings(lambda: Settings(web_port="abc", log_level="LOUD"))
    message = str(caught.value)
    assert message.startswith("PHASEFLOW_WEB_PORT='abc': Input should be a valid integer")
    assert "PHASEFLOW_LOG_LEVEL='LOUD'" in message
    assert "\n" not in message


# --- reachability ---------------------------------------------------------------------------


def test_a_closed_broker_port_is_reported_at_once(down: Settings) -> None:
    with pytest.raises(ServiceUnavailableError, match=rf"cannot reach the Kafka broker \({CLOSED}"):
        require_broker(down)


def test_a_listener_that_is_not_kafka_is_reported_after_the_timeout(listening: int) -> None:
    # A broker that answers is covered by tests/integration/test_cli_failures.py.
    settings = Settings(broker_url=f"kafka://{CLOSED};kafka://127.0.0.1:{listening}")
    with pytest.raises(ServiceUnavailableError) as caught:
        require_broker(settings, timeout=0.5)
    assert str(caught.value) == (
        f"cannot reach the Kafka broker ({CLOSED}: Connection refused; 127.0.0.1:{listening}: "
        "no answer to a Kafka request within 0.5 s (not Kafka? check PHASEFLOW_BROKER_URL; a TLS "
        "listener needs PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (now PLAINTEXT)))"
    )


def test_bigquery_endpoint_is_probed_only_when_set(down: Settings, listening: int) -> None:
    with pytest.raises(ServiceUnavailableError, match=rf"cannot reach BigQuery at http://{CLOSED}"):
        require_bigquery(down)
    require_bigquery(Settings(bigquery_endpoint=f"http://127.0.0.1:{listening}"))
    require_bigquery(Settings(bigquery_endpoint=None))
    with pytest.raises(BadInputError, match="PHASEFLOW_BIGQUERY_ENDPOINT='nonsense'"):
        require_bigquery(Settings(bigquery_endpoint="nonsense"))


# --- publish against the registry -----------------------------------------------------------


def test_registry_problem_of_publish() -> None:
    registry = load_registry(None)
    assert registry_problem(registry, "player_game_summary", 3) is None
    assert registry_problem(registry, "player_game_summry", 3) == (
        "--processor: 'player_game_summry' is not a processor of the registry; "
        "did you mean 'player_game_summary'?"
    )
    assert registry_problem(registry, "player_game_summary", 4) == (
        "--phase: 'player_game_summary' belongs to phase 3 (analytics), not phase 4; use --phase 3"
    )


async def publish(settings: Settings, records: int, *, check: bool) -> int:
    return await publish_from_cli(
        settings,
        processor="nope",
        game_date="2026-01-05",
        phase="3",
        status="success",
        record_count=records,
        execution_id=None,
        check=check,
    )


async def test_publish_rejects_bad_input_before_connecting(down: Settings) -> None:
    # The broker is down: a BadInputError (not a connection failure) shows nothing was sent.
    with pytest.raises(BadInputError, match=r"'nope' is not a processor.*--no-check"):
        await publish(down, 0, check=True)
    with pytest.raises(BadInputError, match="--records: Input should be greater than or equal"):
        await publish(down, -1, check=False)
    with pytest.raises(ServiceUnavailableError, match="cannot reach the Kafka broker"):
        await publish(down, 0, check=False)


# --- main() ---------------------------------------------------------------------------------


def test_registry_check_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(
        '[[phases]]\nphase = 5\nname = "predictions"\nprocessors = ["c"]\nmax_wait = "1h"\n'
    )
    assert main(["registry", "check", str(path)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        (
            f"phaseflow: error: {path}: phases[0].max_wait: phase 5 has no successor: phase 6 is "
            "not declared, so this deadline can never take effect; declare [[phases]] phase = 6 "
            "or remove max_wait"
        ),
        (
            f"phaseflow: error: {path}: systems: phase 5 is declared but no prediction system is "
            "enabled, so every prediction batch would end with 0 predictions; add a [[systems]] "
            "entry with system_id = one of: ensemble_v1, moving_average_baseline_v1, "
            "recency_trend_v1, similarity_balanced_v1, zone_matchup_v1"
        ),
    ]
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    assert [f"phaseflow: error: {line}" for line in str(caught.value).splitlines()] == (
        err.splitlines()
    )


def test_registry_check_of_a_good_file_says_what_it_declares(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "streams" / "pipeline.toml"
    assert main(["registry", "check", str(shipped)]) == 0
    assert capsys.readouterr().out == (
        f"{shipped}: ok: phases 1, 2, 3, 4, 5, 6, 47 processors, 5 prediction system(s) enabled\n"
    )
    assert parse_registry(shipped.read_text()).phases  # the same file the worker would load


# --- a failed start leaves nothing open ------------------------------------------------------


def _publisher_without_probe(settings: Settings) -> AsyncService:
    """The completion client with idempotence off: its producer's own start fails."""
    return CompletionPublisher(settings.model_copy(update={"kafka_producer_idempotence": False}))


@pytest.mark.parametrize(
    ("make", "failure"),
    [
        (CompletionPublisher, BrokerUnavailableError),  # its idempotence probe fails first
        (_publisher_without_probe, BrokerUnavailableError),
        (SideProducer, KafkaConnectionError),
    ],
)
async def test_a_producer_whose_start_failed_is_closed(
    make: Callable[[Settings], AsyncService], failure: type[Exception], down: Settings
) -> None:
    reports: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    try:
        service = make(down)
        with pytest.raises(failure):
            await service.start()
        del service
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reports == []
