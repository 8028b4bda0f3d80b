"""No PHASEFLOW_* variable is ignored silently: a renamed one names its new variable, a removed
one what replaced it, an unknown one the closest setting; the tests' own variables pass; the
processors' client rejects only its own renamed variables.

rename_settings: skip (this test sets the old variables on purpose)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from phaseflow.streams.cli import main
from phaseflow.streams.cli_errors import EXIT_BAD_INPUT, BadInputError, load_settings
from phaseflow.streams.client import ClientSettings
from phaseflow.streams.core.env_check import (
    RENAMED,
    UnknownSettingError,
    check_environment,
    environment_problems,
)
from phaseflow.streams.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = tuple(Settings.model_fields)


def problems(**environ: str) -> list[str]:
    return environment_problems(environ, FIELDS)


def test_a_renamed_variable_names_its_new_one() -> None:
    assert problems(PHASEFLOW_TOPIC_PARTITIONS="4") == [
        "PHASEFLOW_TOPIC_PARTITIONS is now PHASEFLOW_KAFKA_TOPIC_PARTITIONS"
    ]
    assert problems(PHASEFLOW_COORDINATOR_TICK_SECONDS="1") == [
        "PHASEFLOW_COORDINATOR_TICK_SECONDS is now PHASEFLOW_PREDICTION_COORDINATOR_TICK_SECONDS"
    ]


def test_every_rename_leads_to_a_setting_and_away_from_one() -> None:
    for old, new in RENAMED.items():
        assert new in Settings.model_fields, new
        assert old not in Settings.model_fields, old


def test_the_check_knows_the_renames_the_script_made() -> None:
    spec = importlib.util.spec_from_file_location(
        "rename_settings", ROOT / "scripts" / "rename_settings.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert dict(RENAMED) == module.RENAMES


def test_a_removed_variable_says_what_replaces_it() -> None:
    assert problems(PHASEFLOW_PREDICTION_QUERY_ATTEMPTS="3") == [
        (
            "PHASEFLOW_PREDICTION_QUERY_ATTEMPTS was removed: prediction queries retry by time, "
            "PHASEFLOW_BIGQUERY_RETRY_SECONDS"
        )
    ]


def test_an_unknown_variable_suggests_the_closest_setting() -> None:
    assert problems(PHASEFLOW_BROKER_ULR="x") == [
        "PHASEFLOW_BROKER_ULR is not a setting; did you mean PHASEFLOW_BROKER_URL?"
    ]
    # A misspelled old name leads to the new one, not to the old.
    assert problems(PHASEFLOW_TOPIC_PARTITONS="4") == [
        "PHASEFLOW_TOPIC_PARTITONS is not a setting; did you mean PHASEFLOW_KAFKA_TOPIC_PARTITIONS?"
    ]
    assert problems(PHASEFLOW_XYZZY="1") == [
        "PHASEFLOW_XYZZY is not a setting (docs/settings.md lists them)"
    ]


def test_lower_case_variables_are_checked_too() -> None:
    # pydantic-settings reads variables case-insensitively, so it would ignore this one too.
    assert problems(phaseflow_topic_partitions="4") == [
        "phaseflow_topic_partitions is now PHASEFLOW_KAFKA_TOPIC_PARTITIONS"
    ]


def test_settings_tests_and_other_programs_variables_pass() -> None:
    assert (
        problems(
            PHASEFLOW_BROKER_URL="kafka://x:1",
            PHASEFLOW_KAFKA_TOPIC_PARTITIONS="4",
            PHASEFLOW_TEST_BROKER="kafka",
            PHASEFLOW_TEST_KAFKA_VERSION="3.9.0",
            PHASEFLOW_BENCH_BROKER_KIND="tansu",
            PHASEFLOW_UPDATE_SCREENSHOT="1",
            PATH="/usr/bin",
            KAFKA_HEAP_OPTS="-Xmx1g",
        )
        == []
    )


def test_several_problems_are_one_line() -> None:
    with pytest.raises(UnknownSettingError) as raised:
        check_environment(
            {"PHASEFLOW_TOPIC_PARTITIONS": "4", "PHASEFLOW_RATE_LIMIT_PER_MINUTE": "5"}, FIELDS
        )
    assert str(raised.value) == (
        "PHASEFLOW_RATE_LIMIT_PER_MINUTE is now PHASEFLOW_WEB_RATE_LIMIT_PER_MINUTE; "
        "PHASEFLOW_TOPIC_PARTITIONS is now PHASEFLOW_KAFKA_TOPIC_PARTITIONS"
    )


def test_loading_the_settings_stops_on_a_renamed_variable() -> None:
    with pytest.raises(BadInputError, match=r"^PHASEFLOW_TOPIC_PARTITIONS is now PHASEFLOW_KAFKA_"):
        load_settings(environ={"PHASEFLOW_TOPIC_PARTITIONS": "4"})
    assert load_settings(environ={"PHASEFLOW_KAFKA_TOPIC_PARTITIONS": "4"}) is not None


@pytest.mark.parametrize(
    "argv", [["topics"], ["registry", "check", "x.toml"], ["status", "--date", "2026-01-05"]]
)
def test_every_command_stops_with_exit_2_and_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHASEFLOW_BROKER_SESSION_TIMEOUT_SECONDS", "6")
    assert main(argv) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        "phaseflow: error: PHASEFLOW_BROKER_SESSION_TIMEOUT_SECONDS is now "
        "PHASEFLOW_KAFKA_SESSION_TIMEOUT_SECONDS\n"
    )


def test_the_client_ignores_the_workers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A processor deployed beside the worker shares its environment, old names included: the
    # worker's variables are not the client's business.
    monkeypatch.setenv("PHASEFLOW_WEB_PORT", "7000")
    monkeypatch.setenv("PHASEFLOW_LAG_READY_MAX_MESSAGES", "5")
    monkeypatch.setenv("PHASEFLOW_TOPIC_PARTITIONS", "4")
    monkeypatch.setenv("PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE", "false")
    assert ClientSettings().kafka_producer_idempotence is False


def test_the_client_rejects_its_own_renamed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_PRODUCER_IDEMPOTENCE", "false")
    with pytest.raises(ValidationError) as raised:
        ClientSettings()
    assert "PHASEFLOW_PRODUCER_IDEMPOTENCE is now PHASEFLOW_KAFKA_PRODUCER_IDEMPOTENCE" in str(
        raised.value
    )


def test_the_settings_doc_lists_every_rename() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    for old, new in RENAMED.items():
        assert f"| `PHASEFLOW_{old.upper()}` | `PHASEFLOW_{new.upper()}` |" in doc, old
