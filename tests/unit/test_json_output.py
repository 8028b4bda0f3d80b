"""``--json`` on status, lag, dlq list, rerun --dry-run and registry check: one JSON document on
stdout; errors stay one line on stderr with the usual exit codes."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from phaseflow.streams.cli import main
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.dlq_letters import Lineage, failed_again
from phaseflow.streams.monitoring.lag_cli import lag_document
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.registry_check import check_registry_file
from phaseflow.streams.rerun import rerun_command
from phaseflow.streams.status import run_status
from tests.unit.test_dlq_lineage import history
from tests.unit.test_dlq_lineage import letter as dead_letter
from tests.unit.test_operations import _row
from tests.unit.test_status_page import DAY, full_summary

REGISTRY = Path(__file__).parents[2] / "streams" / "pipeline.toml"


# --- registry check -------------------------------------------------------------------------


def test_registry_check_json_describes_the_file() -> None:
    out = io.StringIO()
    assert check_registry_file(REGISTRY, out, as_json=True) == 0
    document = json.loads(out.getvalue())
    registry = load_registry(REGISTRY)
    assert document["ok"] is True
    assert [p["phase"] for p in document["phases"]] == [1, 2, 3, 4, 5, 6]
    assert document["processors"] == sum(len(spec.processors) for spec in registry.phases)
    assert document["phases"][1]["expected"] == sorted(registry.phase(2).required)
    assert document["registry"]["rerun"]["max_attempts"] == registry.rerun.max_attempts
    assert document["systems_enabled"] == [s.system_id for s in registry.enabled_systems]


def test_registry_check_json_counts_fallback_groups(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[[phases]]\nphase = 2\nname = "raw"\nprocessors = ["c"]\nany_of = [["a", "b"]]\n'
        '[[phases]]\nphase = 3\nname = "analytics"\nprocessors = ["x"]\n'
    )
    out = io.StringIO()
    check_registry_file(path, out, as_json=True)
    document = json.loads(out.getvalue())
    assert (document["processors"], document["fallback_groups"]) == (4, 1)
    assert document["phases"][0]["fallback_groups"] == [["a", "b"]]
    assert document["phases"][0]["expected"] == ["a", "c"]


def test_registry_check_json_errors_stay_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[phases]]\nphase = 2\nname = "raw"\nprocessors = ["a"]\nany_of = [["a", "b"]]\n'
    )
    assert main(["registry", "check", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "phases[0].any_of[0][0]: 'a' is also in phases[0].processors" in captured.err


# --- status ---------------------------------------------------------------------------------


def test_status_json_is_the_workers_document() -> None:
    body = orjson.dumps(full_summary())
    out = io.StringIO()
    settings = Settings(web_port=7001)
    assert run_status(settings, game_date=DAY, out=out, fetch=lambda _: body, as_json=True) == 0
    assert json.loads(out.getvalue()) == json.loads(body)


def test_status_json_of_an_unreachable_worker_prints_nothing_on_stdout() -> None:
    def refuse(url: str) -> bytes:
        raise OSError("connection refused")

    out, err = io.StringIO(), io.StringIO()
    settings = Settings(web_port=7001)
    code = run_status(
        settings, game_date=DAY, url="http://w:1", out=out, err=err, fetch=refuse, as_json=True
    )
    assert (code, out.getvalue()) == (1, "")
    assert err.getvalue().count("\n") == 1


# --- lag ------------------------------------------------------------------------------------


def test_lag_json_has_every_row_and_a_verdict_per_group() -> None:
    rows = [_row("t", 1, 7, LagStatus.WARN), _row("t", 0, 3, LagStatus.OK)]
    document = json.loads(orjson.dumps(lag_document(rows, ["g", "idle"])))
    assert [(r["partition"], r["lag"], r["status"]) for r in document["rows"]] == [
        (0, 3, "OK"),
        (1, 7, "WARN"),
    ]
    good, idle = document["groups"]
    assert (good["status"], good["lag"], good["worst"]["partition"]) == ("WARN", 10, 1)
    assert (idle["committed_offsets"], idle["status"], idle["worst"]) == (False, None, None)


def test_lag_json_refuses_watch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lag", "--json", "--watch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "phaseflow: error: lag --json prints one sample; drop --watch\n"


# --- dlq list -------------------------------------------------------------------------------


def test_dlq_list_json_has_whole_errors_lineage_and_counts() -> None:
    from phaseflow.streams.dlq import letters_document

    letters = [*history(), dead_letter(20, source_offset=99)]
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    replayed = {letters[0].ledger_key}
    document = json.loads(
        orjson.dumps(
            letters_document(letters, replayed, now, lineage=Lineage(letters), unreadable=2)
        )
    )
    first, _, third, fresh = document["letters"]
    assert first["replayed"] == "yes"
    assert third["lineage"] == [letters[0].letter_id, letters[1].letter_id, letters[2].letter_id]
    assert fresh["error"].endswith(" END")  # whole, not clipped as in the table
    assert fresh["age_seconds"] == timedelta(minutes=5).total_seconds()
    assert (document["count"], document["unreadable"]) == (4, 2)
    # The summary line's count: replays that failed again and are not replayed themselves.
    assert document["failed_again"] == len(failed_again(letters, replayed)) == 1


# --- rerun --dry-run ------------------------------------------------------------------------


async def test_rerun_dry_run_json_lists_the_requests() -> None:
    out = io.StringIO()
    code = await rerun_command(
        Settings(),
        start=date(2026, 3, 1),
        end=None,
        phase=None,
        processor="player_game_summary",
        attempt=1,
        dry_run=True,
        out=out,
        as_json=True,
    )
    assert code == 0
    document = json.loads(out.getvalue())
    assert (document["dry_run"], document["count"], document["first_phase"]) == (True, 1, None)
    [request] = document["requests"]
    assert (request["processor_name"], request["phase"], request["game_date"]) == (
        "player_game_summary",
        3,
        "2026-03-01",
    )


async def test_rerun_dry_run_json_of_every_phase_says_the_order() -> None:
    out = io.StringIO()
    await rerun_command(
        Settings(),
        start=date(2026, 3, 1),
        end=None,
        phase=None,
        processor=None,
        attempt=1,
        dry_run=True,
        out=out,
        as_json=True,
    )
    document = json.loads(out.getvalue())
    assert (document["first_phase"], document["followed_phases"]) == (2, [3, 4, 5, 6])
    assert {r["phase"] for r in document["requests"]} == {2}


async def test_rerun_json_plan_error_is_one_line_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await rerun_command(
        Settings(),
        start=date(2026, 3, 1),
        end=None,
        phase=None,
        processor="who",
        attempt=1,
        dry_run=True,
        out=out,
        err=err,
        as_json=True,
    )
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue() == "phaseflow: error: processor 'who' is not in the registry\n"


def test_rerun_json_needs_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerun", "--date", "2026-03-01", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--json needs --dry-run" in captured.err
