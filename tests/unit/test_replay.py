"""The offline replay engine (phaseflow.agents.replay) and its report, without a broker: the real
readiness processor on recorded receive times, a manual clock, a dict as its table."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from phaseflow.agents.replay import (
    RecordedCompletion,
    ReplayOutcome,
    ReplaySettings,
    horizon,
    replay,
)
from phaseflow.models.codec import encode
from phaseflow.streams.cli import main
from phaseflow.streams.cli_errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, BadInputError
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import Registry, load_registry, parse_registry
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.replay import replay_dates
from phaseflow.streams.replay_report import (
    compare,
    format_delta,
    json_document,
    recorded_decisions,
    render_text,
)
from phaseflow.streams.simulation import make_completion

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)  # the morning after: overnight mode
SETTINGS = ReplaySettings(
    tick=timedelta(seconds=1),
    pipeline_timezone="America/New_York",
    max_message_bytes=10_000,
    future_tolerance=timedelta(minutes=5),
)


def registry(tier_after: str) -> Registry:
    return parse_registry(
        f"""
stall_after = "2h"
[rerun]
max_attempts = 3
backoff = "5m"
[cleanup]
interval = "3h"
[[phases]]
phase = 3
name = "analytics"
processors = ["a", "b", "c"]
tiers = [{{ after = "{tier_after}", min_complete = 2 }}]
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""
    )


def recorded(name: str, at: datetime, offset: int, *, phase: int = 3) -> RecordedCompletion:
    event = make_completion(name, DAY, phase, at=at)
    origin = Origin("t.phase-completions", 0, offset, DAY.isoformat().encode())
    return RecordedCompletion(encode(event), at, origin)


def a_day(*, with_c: bool) -> list[RecordedCompletion]:
    # Phase 4's one processor reports once the slowest start (the 1 h tier) is past.
    day = [
        recorded("a", T0, 0),
        recorded("b", T0 + timedelta(minutes=1), 1),
        recorded("x", T0 + timedelta(hours=1, minutes=5), 2, phase=4),
    ]
    if with_c:
        day.append(recorded("c", T0 + timedelta(minutes=5, seconds=30), 3))
    return day


async def run(tier_after: str, completions: list[RecordedCompletion]) -> ReplayOutcome:
    reg = registry(tier_after)
    until = max(c.received_at for c in completions) + horizon(reg)
    return await replay(reg, completions, settings=SETTINGS, until=until)


async def test_a_ready_phase_fires_at_the_receive_time_of_its_last_completion() -> None:
    outcome = await run("1h", list(reversed(a_day(with_c=True))))  # taken by receive time
    [trigger] = outcome.triggers
    assert (trigger.phase, trigger.reason, trigger.rule) == (4, "ready", "all_complete")
    assert trigger.triggered_at == T0 + timedelta(minutes=5, seconds=30)
    assert outcome.reruns == []
    assert outcome.alerts == []


async def test_a_tier_fires_on_the_first_timer_run_past_it_with_its_alert_and_reruns() -> None:
    outcome = await run("1h", a_day(with_c=False))
    [trigger] = outcome.triggers
    assert (trigger.reason, trigger.rule, trigger.missing) == ("timeout", "tier_1_2_of_3", ["c"])
    # The deadline counts from the first receive time; the timer runs every second from there.
    assert trigger.triggered_at == T0 + timedelta(hours=1)
    [alert] = outcome.alerts
    assert (alert.kind, alert.subject, alert.raised_at) == (
        "phase_timeout",
        "2026-03-10:phase_3",
        T0 + timedelta(hours=1),
    )
    [rerun] = outcome.reruns
    assert (rerun.processor_name, rerun.reason, rerun.attempt) == ("c", "missing_at_deadline", 1)


async def test_a_shorter_tier_moves_the_start_and_its_decisions_earlier() -> None:
    outcome = await run("10m", a_day(with_c=False))
    [trigger] = outcome.triggers
    assert trigger.triggered_at == T0 + timedelta(minutes=10)
    assert [a.raised_at for a in outcome.alerts] == [T0 + timedelta(minutes=10)]


async def test_a_removed_processor_is_dead_lettered_and_the_phase_fires_without_it() -> None:
    reg = parse_registry(
        '[[phases]]\nphase = 3\nname = "analytics"\nprocessors = ["a", "b"]\n'
        '[[phases]]\nphase = 4\nname = "precompute"\nprocessors = ["x"]\n'
    )
    day = a_day(with_c=True)
    outcome = await replay(reg, day, settings=SETTINGS, until=day[-1].received_at)
    assert outcome.dead_lettered == 1
    [trigger] = outcome.triggers
    assert trigger.triggered_at == T0 + timedelta(minutes=1)


async def test_the_report_shows_the_delta_and_the_decisions_that_differ() -> None:
    on_log = await run("1h", a_day(with_c=False))
    would = await run("10m", a_day(with_c=False))
    log_end = T0 + timedelta(hours=3)
    comparison = compare(
        dates=(DAY,),
        registry="new.toml",
        completions=2,
        log_end=log_end,
        replayed_until=log_end,
        recorded=recorded_decisions((DAY,), on_log.triggers, on_log.reruns, on_log.alerts),
        outcome=would,
    )
    [start] = comparison.phases
    assert start.delta_seconds == -50 * 60
    assert comparison.reruns_only_sent == comparison.reruns_only_would_send == []
    assert comparison.alerts_only_sent == comparison.alerts_only_would_send == []
    lines = render_text(comparison)
    assert lines[2].split() == [
        "2026-03-10",
        "4",
        "2026-03-11T10:00:00Z",
        "timeout",
        "(tier_1_2_of_3)",
        "2026-03-11T09:10:00Z",
        "timeout",
        "(tier_1_2_of_3)",
        "-50m00s",
    ]
    assert lines[3:] == [
        "reruns: sent 1, would send 1: no difference",
        "alerts: sent 1, would send 1: no difference",
    ]
    document = json_document(comparison)
    assert document["phases"][0]["delta_seconds"] == -3000.0
    assert document["phases"][0]["would_fire"]["rule"] == "tier_1_2_of_3"


async def test_a_decision_on_one_side_only_is_listed_with_its_side() -> None:
    on_log = await run("1h", a_day(with_c=False))
    would = await run("1h", a_day(with_c=True))  # c reported: ready, no timeout, no rerun
    comparison = compare(
        dates=(DAY,),
        registry="new.toml",
        completions=3,
        log_end=T0 + timedelta(minutes=30),
        replayed_until=T0 + timedelta(hours=3),
        recorded=recorded_decisions((DAY,), on_log.triggers, on_log.reruns, on_log.alerts),
        outcome=would,
    )
    assert [r.processor_name for r in comparison.reruns_only_sent] == ["c"]
    assert comparison.reruns_only_would_send == []
    assert [a.kind for a in comparison.alerts_only_sent] == ["phase_timeout"]
    text = "\n".join(render_text(comparison))
    assert (
        "only sent:       2026-03-11T10:00:00Z 2026-03-10 phase 3 c (missing_at_deadline, "
        "attempt 1)" in text
    )
    assert "2026-03-11T10:00:00Z timeout (tier_1_2_of_3) (after the log ends)" in text


async def test_decisions_after_the_log_ends_are_listed_apart_not_as_differences() -> None:
    would = await run("10m", a_day(with_c=False))
    comparison = compare(
        dates=(DAY,),
        registry="new.toml",
        completions=2,
        log_end=T0 + timedelta(minutes=5),  # the log was read before the 10 min tier passed
        replayed_until=T0 + timedelta(hours=3),
        recorded=recorded_decisions((DAY,), [], [], []),
        outcome=would,
    )
    assert comparison.reruns_would_send == ()
    assert comparison.alerts_would_send == ()
    assert [r.processor_name for r in comparison.reruns_after_log] == ["c"]
    assert [a.kind for a in comparison.alerts_after_log] == ["phase_timeout"]
    assert render_text(comparison)[2:] == [
        (
            "2026-03-10  4      -              2026-03-11T09:10:00Z timeout (tier_1_2_of_3) "
            "(after the log ends)  -"
        ),
        "reruns: sent 0, would send 0: no difference",
        (
            "  after log end:   2026-03-11T09:10:00Z 2026-03-10 phase 3 c (missing_at_deadline, "
            "attempt 1)"
        ),
        "alerts: sent 0, would send 0: no difference",
        "  after log end:   2026-03-11T09:10:00Z phase_timeout 2026-03-10:phase_3",
    ]
    document = json_document(comparison)
    assert [r["processor"] for r in document["reruns"]["after_log_end"]] == ["c"]


async def test_operator_reruns_other_dates_and_other_alert_kinds_are_not_compared() -> None:
    on_log = await run("1h", a_day(with_c=False))
    [trigger], [rerun], [alert] = on_log.triggers, on_log.reruns, on_log.alerts
    kept = recorded_decisions(
        (DAY,),
        [trigger, trigger.model_copy(update={"game_date": DAY + timedelta(days=1)})],
        [rerun, rerun.model_copy(update={"requested_by": "alice"})],
        [alert, alert.model_copy(update={"kind": "processor_slowdown"})],
    )
    assert (kept.triggers, kept.reruns, kept.alerts) == ([trigger], [rerun], [alert])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.2, "+0s"),
        (-0.4, "+0s"),
        (-59, "-59s"),
        (3000, "+50m00s"),
        (-3723, "-1h02m03s"),
    ],
)
def test_format_delta(seconds: float | None, text: str) -> None:
    assert format_delta(seconds) == text


def test_replay_dates_checks_the_range() -> None:
    assert replay_dates(DAY, None) == (DAY,)
    assert replay_dates(DAY, DAY + timedelta(days=1)) == (DAY, DAY + timedelta(days=1))
    with pytest.raises(BadInputError, match="--to 2026-03-09 is before --date 2026-03-10"):
        replay_dates(DAY, DAY - timedelta(days=1))


def test_a_bad_registry_is_one_line_and_exit_2_before_the_broker_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEFLOW_BROKER_URL", f"127.0.0.1:{free_port()}")  # nothing listens
    path = tmp_path / "new.toml"
    path.write_text('[[phases]]\nphase = 3\nname = "analytics"\nprocessors = []\nrule = "x"\n')
    assert main(["replay", "--date", "2026-03-10", "--registry", str(path)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"phaseflow: error: {path}: ")
    assert main(["replay", "--date", "2026-03-10", "--registry", str(tmp_path / "no.toml")]) == (
        EXIT_BAD_INPUT
    )
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"phaseflow: error: {tmp_path / 'no.toml'}: cannot read the registry")


def test_an_unreachable_broker_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("PHASEFLOW_BROKER_URL", closed)
    shipped = Path(__file__).resolve().parents[2] / "streams" / "pipeline.toml"
    assert main(["replay", "--date", "2026-03-10", "--registry", str(shipped)]) == EXIT_UNAVAILABLE
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("phaseflow: error: cannot reach the Kafka broker")


def test_the_demo_example_registry_is_the_default_with_a_10_minute_phase_4_tier() -> None:
    repo = Path(__file__).resolve().parents[2]
    default = load_registry(repo / "streams" / "pipeline.toml")
    example = load_registry(repo / "docs" / "examples" / "phase4-10m-tier.toml")
    [tier, *_] = example.phase(4).tiers
    assert (tier.after, tier.min_complete) == (timedelta(minutes=10), 4)
    phases = [p if p.phase != 4 else p.model_copy(update={"tiers": ()}) for p in example.phases]
    default_phases = [
        p if p.phase != 4 else p.model_copy(update={"tiers": ()}) for p in default.phases
    ]
    assert phases == default_phases
    assert example.model_copy(update={"phases": ()}) == default.model_copy(update={"phases": ()})


async def test_the_replayed_day_does_not_log_as_if_it_were_happening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        outcome = await run("1h", a_day(with_c=False))
    assert outcome.triggers  # the processor logs "phase 4 ... started" for it on a worker
    assert [r.getMessage() for r in caplog.records if r.name.startswith("phaseflow.agents")] == []
    assert logging.getLogger("phaseflow.agents").level == logging.NOTSET
