"""Operator actions on the command line leave an audit record (streams/cli_audit.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest
from aiokafka.errors import KafkaConnectionError

from phaseflow.models.audit import AuditRecord, body_digest
from phaseflow.models.codec import decode
from phaseflow.streams import cli, cli_audit
from phaseflow.streams.cli_audit import (
    operator_actor,
    publisher_writer,
    run_audited,
)
from phaseflow.streams.cli_errors import ServiceUnavailableError
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.topics import TopicName
from tests.fixtures.readiness_harness import RecordingPublisher

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def records(publisher: RecordingPublisher) -> list[AuditRecord]:
    assert {topic for topic, _, _ in publisher.sent} <= {TopicName.AUDIT}
    return [decode(AuditRecord, value) for _, _, value in publisher.sent]


def audited(publisher: RecordingPublisher, code: int = 0, **options: Any) -> int:
    return run_audited(
        lambda: code,
        command="rerun",
        arguments={"game_date": "2026-03-10", "phase": "3"},
        actor="alice",
        writer=publisher_writer(publisher),
        clock=ManualClock(NOW),
        host="ops-1",
        **options,
    )


def test_the_record_says_who_what_when_where_and_the_outcome() -> None:
    publisher = RecordingPublisher()
    assert audited(publisher) == 0
    [record] = records(publisher)
    assert record.key_id == "cli:alice"
    assert publisher.sent[0][1] == "cli:alice"  # keyed by actor: one operator's actions in order
    assert record.action == "cli rerun"
    assert record.at == NOW
    assert record.client == "ops-1"
    assert record.summary == {"game_date": "2026-03-10", "phase": "3", "outcome": "ok"}
    assert record.body_sha256 == body_digest(b'{"game_date":"2026-03-10","phase":"3"}')


def test_a_failing_exit_code_is_the_outcome_and_is_kept() -> None:
    publisher = RecordingPublisher()
    assert audited(publisher, code=1) == 1
    assert records(publisher)[0].summary["outcome"] == "exit 1"


def test_a_raising_action_is_recorded_then_raised() -> None:
    publisher = RecordingPublisher()

    def action() -> int:
        raise ServiceUnavailableError("Kafka at localhost:9092 is not reachable\n  retry later")

    with pytest.raises(ServiceUnavailableError):
        run_audited(
            action,
            command="predict",
            arguments={},
            actor="bob",
            writer=publisher_writer(publisher),
            clock=ManualClock(NOW),
            host="h",
        )
    [record] = records(publisher)
    assert record.summary["outcome"] == (
        "failed: Kafka at localhost:9092 is not reachable retry later"
    )


def test_an_unwritten_record_is_one_line_and_exit_1_after_the_action(
    capsys: pytest.CaptureFixture[str],
) -> None:
    done: list[str] = []

    async def broken(record: AuditRecord) -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('localhost', 9092)]")

    def action() -> int:
        done.append("sent")
        return 0

    code = run_audited(
        action,
        command="dlq replay",
        arguments={"limit": "5"},
        actor="alice",
        writer=broken,
        clock=ManualClock(NOW),
        host="h",
    )
    assert (code, done) == (1, ["sent"])
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("phaseflow dlq replay: ok, but its audit record was not written")
    assert "Unable to bootstrap" in line


def test_actor_is_the_flag_or_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert operator_actor(" carol ") == "carol"
    monkeypatch.setattr(cli_audit.getpass, "getuser", lambda: "dave")
    assert operator_actor(None) == "dave"

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(cli_audit.getpass, "getuser", no_user)
    with pytest.raises(cli_audit.BadInputError, match="pass --actor NAME"):
        operator_actor(None)
    with pytest.raises(cli_audit.BadInputError, match="--actor: give a name"):
        operator_actor("  ")


@pytest.fixture
def cli_publisher(monkeypatch: pytest.MonkeyPatch) -> RecordingPublisher:
    """``phaseflow`` with a recording audit writer and no service checks (no broker)."""
    publisher = RecordingPublisher()
    monkeypatch.setattr(cli_audit, "side_producer_writer", lambda _s: publisher_writer(publisher))
    monkeypatch.setattr(cli, "_require_services", lambda _a, _s: None)
    monkeypatch.setattr(cli_audit.getpass, "getuser", lambda: "os-user")
    return publisher


def _stub(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake(*_args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if name == "predict_from_cli":
            return _async_zero()
        return 0

    monkeypatch.setattr(f"{module}.{name}", fake)
    return calls


async def _async_zero() -> int:
    return 0


class Case(NamedTuple):
    argv: list[str]
    module: str
    name: str
    action: str
    arguments: dict[str, str]


COMMANDS: list[Case] = [
    Case(
        ["rerun", "--date", "2026-03-10", "--phase", "3", "--attempt", "2", "--actor", "alice"],
        "phaseflow.streams.rerun",
        "run_rerun",
        "cli rerun",
        {"game_date": "2026-03-10", "phase": "3", "attempt": "2"},
    ),
    Case(
        ["rerun", "--date", "2026-03-01", "--to", "2026-03-02", "--actor", "alice"],
        "phaseflow.streams.rerun",
        "run_rerun",
        "cli rerun",
        {
            "game_date": "2026-03-01",
            "to": "2026-03-02",
            "attempt": "1",
            "follow": "60 min per phase",
        },
    ),
    Case(
        ["rerun", "--date", "2026-03-01", "--no-follow", "--actor", "alice"],
        "phaseflow.streams.rerun",
        "run_rerun",
        "cli rerun",
        {"game_date": "2026-03-01", "attempt": "1", "follow": "no"},
    ),
    Case(
        ["dlq", "replay", "--reason", "not_json", "--limit", "5", "--actor", "alice"],
        "phaseflow.streams.dlq",
        "run_dlq",
        "cli dlq replay",
        {"reason": "not_json", "limit": "5", "force": "False"},
    ),
    Case(
        ["predict", "--date", "2026-03-10", "--actor", "alice"],
        "phaseflow.agents.predictions.commands",
        "predict_from_cli",
        "cli predict",
        {"game_date": "2026-03-10", "batch_id": "", "wait": "0.0"},
    ),
    Case(
        ["seed", "--date", "2026-03-10", "--players", "20", "--actor", "alice"],
        "phaseflow.streams.seed",
        "seed_from_cli",
        "cli seed",
        {"game_date": "2026-03-10", "players": "20"},
    ),
]


@pytest.mark.parametrize("case", COMMANDS, ids=[case.action for case in COMMANDS])
def test_each_operator_command_is_audited(
    cli_publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    calls = _stub(monkeypatch, case.module, case.name)
    assert cli.main(case.argv) == 0
    assert len(calls) == 1
    [record] = records(cli_publisher)
    assert (record.key_id, record.action) == ("cli:alice", case.action)
    assert record.summary == {**case.arguments, "outcome": "ok"}


def test_the_os_user_acts_without_actor(
    cli_publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stub(monkeypatch, "phaseflow.streams.seed", "seed_from_cli")
    assert cli.main(["seed", "--date", "2026-03-10"]) == 0
    assert records(cli_publisher)[0].key_id == "cli:os-user"


@pytest.mark.parametrize(
    ("argv", "module", "name"),
    [
        (["rerun", "--date", "2026-03-10", "--dry-run"], "phaseflow.streams.rerun", "run_rerun"),
        (["dlq", "replay", "--dry-run"], "phaseflow.streams.dlq", "run_dlq"),
        (["dlq", "list"], "phaseflow.streams.dlq", "run_dlq"),
    ],
)
def test_dry_runs_and_reads_are_not_audited(
    cli_publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    module: str,
    name: str,
) -> None:
    calls = _stub(monkeypatch, module, name)
    assert cli.main(argv) == 0
    assert len(calls) == 1
    assert cli_publisher.sent == []


def test_an_unwritable_trail_fails_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(_record: AuditRecord) -> None:
        raise TimeoutError

    factory: Callable[[Any], Any] = lambda _s: broken  # noqa: E731
    monkeypatch.setattr(cli_audit, "side_producer_writer", factory)
    monkeypatch.setattr(cli, "_require_services", lambda _a, _s: None)
    calls = _stub(monkeypatch, "phaseflow.streams.seed", "seed_from_cli")
    assert cli.main(["seed", "--date", "2026-03-10", "--actor", "alice"]) == 1
    assert len(calls) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "audit record was not written" in line
    assert "(TimeoutError)" in line


def test_an_interrupted_action_is_recorded_then_raised() -> None:
    publisher = RecordingPublisher()

    def action() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_audited(
            action,
            command="dlq replay",
            arguments={},
            actor="bob",
            writer=publisher_writer(publisher),
            clock=ManualClock(NOW),
            host="h",
        )
    assert records(publisher)[0].summary == {"outcome": "failed: KeyboardInterrupt"}


def test_seed_checks_the_broker_first_its_audit_record_goes_there() -> None:
    parse = cli._parser().parse_args
    assert cli._broker_needed(parse(["seed", "--date", "2026-03-10"]))
    assert not cli._broker_needed(parse(["rerun", "--date", "2026-03-10", "--dry-run"]))
