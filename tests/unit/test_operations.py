"""Pieces of ``phaseflow dlq``, ``phaseflow rerun`` and the in-worker lag monitor, no broker."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from faust.types import TP

from phaseflow.models.codec import encode
from phaseflow.models.events import DeadLetter, RerunRequest
from phaseflow.streams.app import build_app
from phaseflow.streams.cli import _parser
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.dlq import format_letters, summary
from phaseflow.streams.dlq_letters import (
    Letter,
    LetterFilter,
    format_age,
    parse_age,
    unreplayed,
)
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from phaseflow.streams.monitoring.install import OwnConsumerStalledError, own_lag, stuck_here
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.progress import ProgressBar
from phaseflow.streams.rerun import MAX_DAYS, RerunPlanError, date_range, plan_reruns

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def letter(
    *,
    topic: str = "pf.phase-completions",
    partition: int = 0,
    offset: int = 0,
    error_type: str = "not_json",
    age: timedelta = timedelta(minutes=5),
    dlq_offset: int | None = None,
) -> Letter:
    dead = DeadLetter.wrap(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=b"2026-02-28",
        value=b"nope",
        error=f"bad: {error_type}",
        error_type=error_type,
        failed_at=NOW - age,
    )
    return Letter(0, offset if dlq_offset is None else dlq_offset, dead)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        (" 1d 2h ", timedelta(hours=26)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1h-", "-1h", "1.5h"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_format_age() -> None:
    assert format_age(timedelta(seconds=42)) == "42s"
    assert format_age(timedelta(hours=26, minutes=3)) == "1d2h"
    assert format_age(timedelta(seconds=-5)) == "0s"


def test_filter_by_topic_reason_age_and_limit() -> None:
    letters = [
        letter(offset=1, error_type="not_json", age=timedelta(hours=3)),
        letter(offset=2, error_type="unknown_phase", age=timedelta(hours=2)),
        letter(offset=3, topic="pf.predictions", error_type="not_json", age=timedelta(hours=5)),
        letter(offset=4, error_type="not_json", age=timedelta(minutes=1)),
    ]

    def offsets(selection: LetterFilter) -> list[int]:
        return [item.letter.offset for item in selection.select(letters, now=NOW, prefix="pf")]

    assert offsets(LetterFilter()) == [3, 1, 2, 4]  # oldest failure first
    assert offsets(LetterFilter(topic="phase-completions")) == [1, 2, 4]
    assert offsets(LetterFilter(topic="pf.phase-completions")) == [1, 2, 4]
    assert offsets(LetterFilter(topic="other")) == []
    assert offsets(LetterFilter(reason="not_json")) == [3, 1, 4]
    assert offsets(LetterFilter(older_than=timedelta(hours=2))) == [3, 1, 2]
    assert offsets(LetterFilter(reason="not_json", older_than=timedelta(hours=1), limit=1)) == [3]
    assert offsets(LetterFilter(limit=0)) == []


def test_unreplayed_skips_the_ledger_and_duplicates_of_one_record() -> None:
    first = letter(offset=1)
    again = letter(offset=1, dlq_offset=9)  # the same original record, dead-lettered twice
    other = letter(offset=2)
    assert unreplayed([first, again, other], set()) == [first, other]
    assert unreplayed([first, again, other], {first.ledger_key}) == [other]
    assert first.ledger_key == "pf.phase-completions:0:1"


def test_list_table_and_summary() -> None:
    items = [letter(offset=1, age=timedelta(hours=3)), letter(offset=2, error_type="oversized")]
    table = format_letters(items, {items[0].ledger_key}, NOW)
    lines = table.splitlines()
    assert lines[0].split() == [
        "FAILED_AT",
        "AGE",
        "LETTER",
        "SOURCE",
        "KEY",
        "ERROR_TYPE",
        "REPLAYED",
        "REPLAY_OF",
        "ERROR",
    ]
    assert "pf.phase-completions[0]@1" in lines[1]
    assert " yes " in lines[1]
    assert "oversized" in lines[2]
    assert " no " in lines[2]
    assert summary(items, {items[0].ledger_key}, NOW) == (
        "2 dead letter(s), 1 not replayed; oldest not replayed: 5m"
    )
    assert summary([], set(), NOW) == "0 dead letter(s), 0 not replayed"


def test_progress_bar_off_a_terminal_writes_tenths() -> None:
    out = io.StringIO()
    bar = ProgressBar(20, out, label="x", width=10)
    for _ in range(20):
        bar.advance()
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # the first step, then one per tenth
    assert lines[0] == "x [..........] 1/20"
    assert lines[-1] == "x [##########] 20/20"
    empty = io.StringIO()
    ProgressBar(0, empty, width=4).finish()
    assert empty.getvalue() == "[####] 0/0\n"


REGISTRY = load_registry(None)
TODAY = date(2026, 3, 10)


def test_rerun_one_processor_over_one_date_is_manual() -> None:
    requests = plan_reruns(
        REGISTRY,
        start=date(2026, 3, 1),
        end=None,
        phase=None,
        processor="player_daily_cache",
        today=TODAY,
        now=NOW,
        requested_by="cli",
    )
    assert [(r.phase, r.processor_name, r.reason) for r in requests] == [
        (4, "player_daily_cache", "manual")
    ]
    assert requests[0].key == "2026-03-01:4:player_daily_cache"


def test_rerun_ids_are_deterministic_and_not_the_agents() -> None:
    def plan(attempt: int) -> list[str]:
        return [
            r.request_id
            for r in plan_reruns(
                REGISTRY,
                start=date(2026, 3, 1),
                end=None,
                phase=3,
                processor=None,
                today=TODAY,
                now=NOW,
                requested_by="cli",
                attempt=attempt,
            )
        ]

    assert plan(1) == plan(1)
    assert set(plan(1)).isdisjoint(plan(2))
    agent_id = RerunRequest.make_id(date(2026, 3, 1), 3, "player_game_summary", 1)
    assert agent_id not in plan(1)


def test_rerun_phase_is_mode_aware() -> None:
    def names(game_date: date) -> list[str]:
        return [
            r.processor_name
            for r in plan_reruns(
                REGISTRY,
                start=game_date,
                end=None,
                phase=3,
                processor=None,
                today=TODAY,
                now=NOW,
                requested_by="cli",
            )
        ]

    spec = REGISTRY.phase(3)
    assert names(date(2026, 3, 1)) == sorted(spec.expected_processors(date(2026, 3, 1), TODAY))
    assert names(TODAY) == sorted(spec.expected_processors(TODAY, TODAY))
    assert len(names(TODAY)) < len(names(date(2026, 3, 1)))


def test_rerun_backfill_asks_the_first_gated_phase_of_every_date() -> None:
    # Phase by phase: later phases start from their triggers (phaseflow.streams.backfill), so only
    # the first gated phase gets requests (it used to be every gated phase at the same moment).
    start, end = date(2026, 3, 1), date(2026, 3, 3)
    requests = plan_reruns(
        REGISTRY,
        start=start,
        end=end,
        phase=None,
        processor=None,
        today=TODAY,
        now=NOW,
        requested_by="cli",
    )
    per_day = len(REGISTRY.phase(2).expected_processors(start, TODAY))
    assert len(requests) == 3 * per_day
    assert {r.reason for r in requests} == {"backfill"}
    assert {r.phase for r in requests} == {2}
    assert len({r.request_id for r in requests}) == len(requests)


@pytest.mark.parametrize(
    ("phase", "processor", "message"),
    [
        (None, "nope", "not in the registry"),
        (3, "player_daily_cache", "is in phase 4, not 3"),
        (9, None, "phase 9 is not in the registry"),
    ],
)
def test_rerun_rejects(phase: int | None, processor: str | None, message: str) -> None:
    with pytest.raises(RerunPlanError, match=message):
        plan_reruns(
            REGISTRY,
            start=date(2026, 3, 1),
            end=None,
            phase=phase,
            processor=processor,
            today=TODAY,
            now=NOW,
            requested_by="cli",
        )


def test_date_range() -> None:
    assert date_range(date(2026, 3, 1), None) == [date(2026, 3, 1)]
    assert len(date_range(date(2026, 3, 1), date(2026, 3, 31))) == 31
    with pytest.raises(RerunPlanError, match="before"):
        date_range(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(RerunPlanError, match=str(MAX_DAYS)):
        date_range(date(2020, 1, 1), date(2026, 1, 1))


def test_cli_parses_the_operations_commands() -> None:
    args = _parser().parse_args(
        ["dlq", "replay", "--topic", "phase-completions", "--older-than", "1h", "--dry-run"]
    )
    assert (args.command, args.dlq_command, args.topic, args.older_than, args.dry_run) == (
        "dlq",
        "replay",
        "phase-completions",
        timedelta(hours=1),
        True,
    )
    args = _parser().parse_args(["dlq", "list", "--reason", "not_json", "--limit", "5"])
    assert (args.reason, args.limit, args.older_than) == ("not_json", 5, None)
    args = _parser().parse_args(["rerun", "--date", "2026-03-01", "--to", "2026-03-02"])
    assert (args.date, args.to, args.phase, args.dry_run) == (
        date(2026, 3, 1),
        date(2026, 3, 2),
        None,
        False,
    )


def _row(topic: str, partition: int, lag: int, status: LagStatus, group: str = "g") -> LagRow:
    return LagRow(
        group=group,
        topic=topic,
        partition=partition,
        committed=0,
        end=lag,
        lag=lag,
        raw_lag=lag,
        lag_seconds=None,
        status=status,
        reason="",
        sampled_at=NOW,
    )


def test_lag_component_shape_and_watchdog_scope() -> None:
    rows = [
        _row("a", 0, 3, LagStatus.OK),
        _row("a", 1, 4, LagStatus.STALL),
        _row("b", 0, 7, LagStatus.STOP),
        _row("a", 0, 99, LagStatus.STOP, group="other"),
    ]
    assert own_lag(rows, "g", None) == {("a", 0): 3, ("a", 1): 4, ("b", 0): 7}
    assert own_lag(rows, "g", {("a", 0), ("b", 0)}) == {("a", 0): 3, ("b", 0): 7}
    assert own_lag(rows, "g", set()) == {}
    everything = {("a", 0), ("a", 1), ("b", 0)}
    stuck = stuck_here(rows, "g", everything, {"a", "b"})
    assert [(r.topic, r.partition) for r in stuck] == [("a", 1), ("b", 0)]
    assert [(r.topic, r.partition) for r in stuck_here(rows, "g", everything, {"a"})] == [("a", 1)]
    assert stuck_here(rows, "g", {("a", 0)}, {"a", "b"}) == []  # another worker's partition


async def test_installed_monitor_serves_lag_and_crashes_only_for_its_readiness_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(topic_prefix="pf", app_id="pf-app", data_dir=tmp_path)
    ctx = build_app(settings)
    monitor = ctx.components.lag_monitor
    assert isinstance(monitor, LagMonitor)
    assert monitor.groups == ["pf-app", "pf-app.prediction-workers"]
    completions = settings.topic(TopicName.PHASE_COMPLETIONS)
    predictions = settings.topic(TopicName.PREDICTION_REQUESTS)
    assigned = {TP(completions, 0), TP(predictions, 0)}
    monkeypatch.setattr(ctx.app.consumer, "assignment", lambda: assigned)
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(ctx.app, "crash", crash)
    rows = [
        _row(predictions, 0, 5, LagStatus.STOP, group="pf-app"),
        _row(completions, 1, 9, LagStatus.STALL, group="pf-app"),  # another worker's
        _row(completions, 0, 2, LagStatus.OK, group="pf-app"),
    ]
    monkeypatch.setattr(monitor, "rows", lambda: rows)
    assert ctx.components.lag() == {(predictions, 0): 5, (completions, 0): 2}
    stall = monitor._on_own_stall  # the callback install() gave the monitor
    assert stall is not None
    await stall()
    assert crashes == []  # BigQuery-bound and foreign partitions never restart this worker
    rows[2] = _row(completions, 0, 2, LagStatus.STALL, group="pf-app")
    await stall()
    assert len(crashes) == 1
    assert isinstance(crashes[0], OwnConsumerStalledError)
    assert f"{completions}[0]" in str(crashes[0])


def test_dead_letter_tracker_counts_unreplayed_letters_in_any_arrival_order() -> None:
    settings = Settings(topic_prefix="pf")
    letters_topic = settings.topic(TopicName.DEAD_LETTERS)
    ledger_topic = settings.topic(TopicName.DEAD_LETTER_REPLAYS)
    tracker = DeadLetterTracker(settings)
    old = letter(offset=1, age=timedelta(hours=3))
    new = letter(offset=2, age=timedelta(minutes=1))
    twice = letter(offset=2, age=timedelta(minutes=2), dlq_offset=7)  # same original record
    replayed_first = letter(offset=3)
    assert tracker.unreplayed == 0
    assert tracker.oldest_age(NOW) is None
    tracker.observe(ledger_topic, replayed_first.ledger_key.encode(), b"{}")
    for item in (old, new, twice, replayed_first):
        tracker.observe(letters_topic, None, encode(item.letter))
    tracker.observe(letters_topic, None, b"not a letter")
    assert tracker.unreplayed == 2
    assert tracker.oldest_age(NOW) == timedelta(hours=3)
    tracker.observe(ledger_topic, old.ledger_key.encode(), b"{}")
    assert tracker.unreplayed == 1
    assert tracker.oldest_age(NOW) == timedelta(minutes=2)
