"""Every ``phaseflow`` command, run for real as a subprocess, with a bad argument and with its
services down: a line saying what is wrong, exit 2 (bad input) or 1 (unreachable), no traceback.
And with the broker up, ``publish`` sends what the registry allows (or anything, ``--no-check``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.simulation import TopicReader

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-01-05"
#: Guards against a hanging command; not a performance assertion.
HANG_GUARD_SECONDS = 120


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def phaseflow(*args: str, env: dict[str, str]) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "phaseflow.streams.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def base_env(**variables: str) -> dict[str, str]:
    """This process's environment without PHASEFLOW_* settings, services on closed ports."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PHASEFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    closed = f"127.0.0.1:{free_port()}"
    env |= {
        "PHASEFLOW_BROKER_URL": closed,
        "PHASEFLOW_BIGQUERY_ENDPOINT": f"http://{closed}",
        "PHASEFLOW_WEB_PORT": str(free_port()),
    }
    return env | variables


def run_all(cases: list[tuple[list[str], dict[str, str]]]) -> list[Run]:
    # Each run is a fresh interpreter; a few at a time keep the test short on a loaded machine.
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda case: phaseflow(*case[0], env=case[1]), cases))


def assert_one_line_no_traceback(run: Run, args: list[str]) -> None:
    output = run.stdout + run.stderr
    assert "Traceback" not in output, (args, output)
    lines = run.stderr.splitlines()
    assert lines, (args, "a failure must say why on stderr", run.stdout)
    assert lines[-1].startswith("phaseflow"), (args, lines)


BROKER_DOWN = [
    ["topics"],
    ["publish", "--processor", "player_game_summary", "--date", DAY, "--phase", "3"],
    ["publish", "--processor", "anything", "--date", DAY, "--phase", "3", "--no-check"],
    ["predict", "--date", DAY],
    ["lag"],
    ["rerun", "--date", DAY, "--phase", "4"],
    ["dlq", "list"],
    ["dlq", "replay"],
]


def test_every_command_with_its_services_down_says_so_and_exits_1() -> None:
    cases = [(args, base_env()) for args in BROKER_DOWN]
    cases.append((["seed", "--date", DAY, "--players", "3"], base_env()))
    for (args, _), run in zip(cases, run_all(cases), strict=True):
        assert run.code == 1, (args, run)
        assert_one_line_no_traceback(run, args)
        assert len(run.stderr.splitlines()) == 1, (args, run.stderr)
        assert "cannot reach" in run.stderr, (args, run.stderr)


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], dict[str, str]]]:
    bad_registry = tmp_path / "bad.toml"
    bad_registry.write_text('[[phases]]\nphase = 5\nname = "p"\nprocessors = ["c"]\n')
    bad_port = base_env(PHASEFLOW_WEB_PORT="not-a-port")
    with_bad_registry = base_env(PHASEFLOW_REGISTRY_PATH=str(bad_registry))
    publish = ["publish", "--date", DAY]
    return [
        (["topics"], bad_port),
        (["lag"], bad_port),
        ([*publish, "--processor", "nope", "--phase", "3"], base_env()),
        ([*publish, "--processor", "player_game_summary", "--phase", "4"], base_env()),
        ([*publish, "--processor", "player_game_summary", "--phase", "9"], base_env()),
        (["publish", "--date", "yesterday", "--processor", "x", "--phase", "3"], base_env()),
        ([*publish, "--processor", "player_game_summary", "--phase", "3"], with_bad_registry),
        (["predict", "--date", "2026-13-01"], base_env()),
        (["seed", "--date", "tomorrow"], base_env()),
        (["seed", "--date", DAY, "--players", "0"], base_env()),
        (["status", "--date", DAY, "--url", "worker-1"], base_env()),
        (["dlq", "list", "--limit", "-1"], base_env()),
        (["lag", "--interval", "-1"], base_env()),
        (["rerun", "--date", DAY, "--attempt", "0", "--dry-run"], base_env()),
        (["rerun", "--date", "05/01/2026"], base_env()),
        (["rerun", "--date", DAY, "--dry-run"], with_bad_registry),
        (["dlq", "list", "--older-than", "a while"], base_env()),
        (["dlq", "replay", "--limit", "many"], base_env()),
        (["lag", "--interval", "often"], base_env()),
        (["registry", "check", str(bad_registry)], base_env()),
        (["registry", "check", str(tmp_path / "missing.toml")], base_env()),
        (["status", "--date", "today"], base_env()),
        (["no-such-command"], base_env()),
    ]


def test_every_command_with_bad_input_says_what_to_fix_and_exits_2(tmp_path: Path) -> None:
    cases = bad_inputs(tmp_path)
    for (args, _), run in zip(cases, run_all(cases), strict=True):
        assert run.code == 2, (args, run)
        assert_one_line_no_traceback(run, args)
        assert run.stdout == "", (args, run.stdout)


def test_a_bad_registry_lists_every_problem_with_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('[[phases]]\nphase = 5\nname = "p"\nprocessors = ["c"]\nmax_wait = "1h"\n')
    run = phaseflow("registry", "check", str(path), env=base_env())
    assert run.code == 2
    assert run.stderr.splitlines() == [
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


# --- with the broker up ---------------------------------------------------------------------


async def test_publish_sends_what_the_registry_allows_and_anything_with_no_check(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    env = base_env() | settings_to_env(settings)
    day = date(2026, 1, 5)
    checked = ["publish", "--processor", "player_game_summary", "--date", DAY, "--phase", "3"]
    unchecked = ["publish", "--processor", "not_in_registry", "--date", DAY, "--phase", "3"]
    sent = phaseflow(*checked, env=env)
    assert (sent.code, sent.stdout) == (0, f"published player_game_summary {DAY} success\n")
    refused = phaseflow(*unchecked, env=env)
    assert refused.code == 2
    forced = phaseflow(*unchecked, "--no-check", env=env)
    assert forced.code == 0, forced
    async with TopicReader(settings, TopicName.PHASE_COMPLETIONS, PhaseCompletion) as reader:
        found = await reader.read_until(lambda got: len(got) >= 2, give_up_after=60, quiet_for=1)
    assert sorted((c.processor_name, c.game_date) for c in found) == [
        ("not_in_registry", day),
        ("player_game_summary", day),
    ]


def test_topics_works_with_the_broker_up(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    run = phaseflow("topics", env=base_env() | settings_to_env(settings))
    assert run.code == 0, run
    assert run.stdout.startswith("created: ")
    assert settings.topic(TopicName.PHASE_COMPLETIONS) in run.stdout


def test_a_dry_run_needs_no_broker() -> None:
    run = phaseflow("rerun", "--date", DAY, "--phase", "4", "--dry-run", env=base_env())
    assert run.code == 0, run
    assert run.stdout.splitlines()[-1] == "dry run: nothing sent"
