"""The pipeline registry: the shipped default is the documented pipeline; bad files fail with the
file, the field and the problem."""

from __future__ import annotations

import textwrap
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from phaseflow.streams.core.registry import (
    PhaseNotConfiguredError,
    Registry,
    RegistryError,
    load_registry,
    parse_registry,
)
from phaseflow.streams.core.registry_fields import format_duration, parse_duration

TODAY = date(2024, 1, 15)
YESTERDAY = date(2024, 1, 14)

MINIMAL = """
[[phases]]
phase = 4
name = "precompute"
processors = ["a", "b", "c"]
critical = ["a"]
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


# --- the default registry -------------------------------------------------------------------


def test_default_declares_six_phases(registry: Registry) -> None:
    assert [spec.phase for spec in registry.phases] == [1, 2, 3, 4, 5, 6]
    assert [spec.name for spec in registry.phases] == [
        "scrapers",
        "raw",
        "analytics",
        "precompute",
        "predictions",
        "export",
    ]
    assert registry.retention_days == 7
    assert registry.rerun.max_attempts == 3
    assert registry.rerun.backoff == timedelta(minutes=5)
    assert registry.cleanup.storm_max_missing_pct == 80
    assert registry.cleanup.storm_min_missing == 10


def test_default_phase_1_is_not_gated(registry: Registry) -> None:
    scrapers = registry.phase(1)
    assert not scrapers.gated
    assert len(scrapers.processors) >= 25
    assert {"nbac_schedule", "odds_api_player_props", "bdl_boxscores"} <= set(scrapers.processors)
    assert all(spec.gated for spec in registry.phases[1:])


def test_default_phase_2(registry: Registry) -> None:
    raw = registry.phase(2)
    assert raw.rule == "all_complete"
    assert raw.required == {"p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"}
    assert set(raw.optional) == {"p2_bigdataball_pbp", "p2_odds_player_props"}
    assert raw.expected_processors(TODAY, TODAY) == raw.required
    assert raw.expected_processors(YESTERDAY, TODAY) == raw.required


def test_default_phase_3(registry: Registry) -> None:
    analytics = registry.phase(3)
    assert analytics.rule == "critical_plus_majority"
    assert analytics.majority_pct == 60
    assert set(analytics.processors) == {
        "player_game_summary",
        "team_defense_game_summary",
        "team_offense_game_summary",
        "upcoming_player_game_context",
        "upcoming_team_game_context",
    }
    assert set(analytics.critical) == {"player_game_summary", "upcoming_player_game_context"}
    assert analytics.same_day_processors == ("upcoming_player_game_context",)


def test_default_phase_4(registry: Registry) -> None:
    precompute = registry.phase(4)
    assert set(precompute.processors) == {
        "team_defense_zone_analysis",
        "player_shot_zone_analysis",
        "player_composite_factors",
        "player_daily_cache",
        "ml_feature_store",
    }
    assert set(precompute.critical) == {"player_daily_cache", "ml_feature_store"}
    assert [(t.after, t.min_complete) for t in precompute.tiers] == [
        (timedelta(minutes=30), 5),
        (timedelta(hours=1), 4),
        (timedelta(hours=2), 3),
    ]
    assert precompute.max_wait == timedelta(hours=4)
    assert precompute.on_deadline == "trigger"


def test_default_phases_5_and_6(registry: Registry) -> None:
    predictions = registry.phase(5)
    assert predictions.processors == ("prediction_coordinator",)
    assert predictions.validation is not None
    assert predictions.validation.min_predictions == 10
    assert predictions.validation.min_completion_pct == 80
    assert predictions.min_coverage_pct == 95
    assert predictions.sla == time(12, 45)
    assert registry.phase(6).processors == ("phase6_export",)
    assert all(spec.slowdown_pct == 40 for spec in registry.phases)


def test_default_slowdown_window(registry: Registry) -> None:
    assert (registry.slowdown.window, registry.slowdown.min_samples) == (20, 5)
    text = phase_block(slowdown_pct="25.0") + "[slowdown]\nwindow = 3\nmin_samples = 2\n"
    loaded = parse_registry(text)
    assert (loaded.slowdown.window, loaded.slowdown.min_samples) == (3, 2)
    assert loaded.phase(4).slowdown_pct == 25


def test_default_systems(registry: Registry) -> None:
    assert len(registry.enabled_systems) >= 2
    first = registry.enabled_systems[0]
    assert registry.system(first.system_id) == first
    assert first.breaker_threshold >= 1
    assert first.breaker_cooldown > timedelta(0)
    assert registry.system("nope") is None


def test_phase_lookup(registry: Registry) -> None:
    assert registry.phase_for_processor("ml_feature_store") == 4
    assert registry.phase_for_processor("p2_odds_player_props") == 2
    assert registry.phase_for_processor("nbac_schedule") == 1
    assert registry.phase_for_processor("who") is None
    assert registry.has_phase(6)
    with pytest.raises(PhaseNotConfiguredError, match="phase 9 is not in the registry") as caught:
        registry.phase(9)
    assert isinstance(caught.value, KeyError)


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(MINIMAL)
    loaded = load_registry(path)
    assert loaded.phase(4).critical == ("a",)
    assert loaded.rerun.max_attempts == 3  # defaults


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"nowhere\.toml: cannot read"):
        load_registry(tmp_path / "nowhere.toml")


# --- mode-aware expectations ----------------------------------------------------------------


def test_expected_processors_are_mode_aware(registry: Registry) -> None:
    analytics = registry.phase(3)
    pre_game = frozenset({"upcoming_player_game_context"})
    assert analytics.expected_processors(TODAY, TODAY) == pre_game
    assert analytics.expected_processors(TODAY + timedelta(days=1), TODAY) == pre_game
    assert analytics.expected_processors(YESTERDAY, TODAY) == frozenset(analytics.processors)
    assert analytics.expected_critical(TODAY, TODAY) == pre_game
    assert analytics.expected_critical(YESTERDAY, TODAY) == frozenset(analytics.critical)


def test_without_same_day_processors_all_are_expected_every_day(registry: Registry) -> None:
    precompute = registry.phase(4)
    assert precompute.expected_processors(TODAY, TODAY) == frozenset(precompute.processors)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(minutes=90)),
        ("1h0m5s", timedelta(hours=1, seconds=5)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["1x", "", "h", "30", "1.5h", "30m1h", "-5m", "1 h"])
def test_bad_durations(text: str) -> None:
    source = MINIMAL + f'max_wait = "{text}"\n'
    with pytest.raises(RegistryError) as caught:
        parse_registry(source, source="pipeline.toml")
    assert str(caught.value) == (
        f"pipeline.toml: phases[0].max_wait: {text!r} is not a duration like "
        "'90s', '30m', '4h' or '1h30m'"
    )


def test_a_number_is_not_a_duration() -> None:
    with pytest.raises(RegistryError, match=r"rerun\.backoff: 300 is not a duration"):
        parse_registry(MINIMAL + "[rerun]\nbackoff = 300\n", source="pipeline.toml")


# --- bad registries -------------------------------------------------------------------------


def phase_block(**fields: str) -> str:
    body = {"phase": "4", "name": '"precompute"', "processors": '["a", "b", "c"]'}
    body.update(fields)
    return "[[phases]]\n" + "".join(f"{key} = {value}\n" for key, value in body.items())


BAD = [
    pytest.param(
        phase_block(rule='"majority"'),
        "phases[0].rule: Input should be 'all_complete' or 'critical_plus_majority'",
        id="unknown-rule",
    ),
    pytest.param(
        phase_block(critical='["a", "zz"]'),
        "phases[0].critical[1]: 'zz' is not one of this phase's processors",
        id="critical-not-a-processor",
    ),
    pytest.param(
        phase_block(optional='["zz"]'),
        "phases[0].optional[0]: 'zz' is not one of this phase's processors",
        id="optional-not-a-processor",
    ),
    pytest.param(
        phase_block(same_day_processors='["zz"]'),
        "phases[0].same_day_processors[0]: 'zz' is not one of this phase's processors",
        id="same-day-not-a-processor",
    ),
    pytest.param(
        phase_block(critical='["a"]', optional='["a"]'),
        "phases[0].optional[0]: 'a' is critical, so it cannot be optional",
        id="critical-and-optional",
    ),
    pytest.param(
        phase_block(processors='["a", "b", "a"]'),
        "phases[0].processors[2]: 'a' is listed twice",
        id="processor-repeated",
    ),
    pytest.param(
        phase_block(processors="[]"),
        "phases[0].processors: a phase needs at least one processor",
        id="no-processors",
    ),
    pytest.param(
        phase_block(
            tiers='[{ after = "1h", min_complete = 3 }, { after = "30m", min_complete = 2 }]'
        ),
        "phases[0].tiers[1].after: 30m is not later than the previous tier's 1h",
        id="tiers-not-increasing",
    ),
    pytest.param(
        phase_block(tiers='[{ after = "1h", min_complete = 4 }]'),
        "phases[0].tiers[0].min_complete: 4 is more than the 3 processors this phase waits for",
        id="min-complete-too-big",
    ),
    pytest.param(
        phase_block(tiers='[{ after = "1h", min_complete = 2 }]', max_wait='"30m"'),
        "phases[0].max_wait: 30m is not later than the last tier (1h)",
        id="max-wait-before-last-tier",
    ),
    pytest.param(
        phase_block(tiers='[{ after = "1x", min_complete = 2 }]'),
        "phases[0].tiers[0].after: '1x' is not a duration like '90s', '30m', '4h'",
        id="bad-tier-duration",
    ),
    pytest.param(
        phase_block() + phase_block(processors='["d"]'),
        "phases[1].phase: phase 4 is already declared by phases[0]",
        id="duplicate-phase",
    ),
    pytest.param(
        phase_block() + phase_block(phase="5", processors='["c"]'),
        "phases[1].processors[0]: 'c' already belongs to phases[0] (phase 4)",
        id="processor-in-two-phases",
    ),
    pytest.param(
        phase_block(procesors='["a"]'),
        "phases[0].procesors: unknown key 'procesors'; did you mean 'processors'?",
        id="typo-key",
    ),
    pytest.param(
        phase_block() + "[rerun]\nmax_atempts = 3\n",
        "rerun.max_atempts: unknown key 'max_atempts'; did you mean 'max_attempts'?",
        id="typo-in-table",
    ),
    pytest.param(
        "retension_days = 3\n" + phase_block(),
        "retension_days: unknown key 'retension_days'; did you mean 'retention_days'?",
        id="typo-top-level",
    ),
    pytest.param(
        phase_block(tiers='[{ after = "1h", min_complete = 2, mni = 1 }]'),
        "phases[0].tiers[0].mni: unknown key 'mni'",
        id="unknown-key-in-tier",
    ),
    pytest.param(
        phase_block(phase="7"),
        "phases[0].phase: Input should be less than or equal to 6",
        id="phase-out-of-range",
    ),
    pytest.param(
        phase_block(phase='"4"'),
        "phases[0].phase: Input should be a valid integer",
        id="phase-as-string",
    ),
    pytest.param(
        phase_block(processors='"a"'),
        "phases[0].processors: expected an array",
        id="processors-not-a-list",
    ),
    pytest.param(
        phase_block(on_deadline='"panic"'),
        "phases[0].on_deadline: Input should be 'trigger' or 'alert'",
        id="on-deadline",
    ),
    pytest.param(
        phase_block(validation="{ min_predictions = -1 }"),
        "phases[0].validation.min_predictions: Input should be greater than or equal to 0",
        id="validation-negative",
    ),
    pytest.param(
        phase_block(sla='"25:00"'),
        "phases[0].sla: '25:00' is not a local time like '12:45'",
        id="bad-sla",
    ),
    pytest.param(
        phase_block() + '[[systems]]\nsystem_id = "a"\n[[systems]]\nsystem_id = "a"\n',
        "systems[1].system_id: 'a' is already declared by systems[0]",
        id="duplicate-system",
    ),
    pytest.param(
        phase_block() + '[[systems]]\nsystem_id = "a"\nbreaker_threshold = 0\n',
        "systems[0].breaker_threshold: Input should be greater than or equal to 1",
        id="breaker-threshold",
    ),
    pytest.param(
        phase_block() + "[slowdown]\nwindow = 4\nmin_samples = 5\n",
        "slowdown.min_samples: 5 is more than the window of 4 durations kept",
        id="slowdown-min-samples-over-window",
    ),
    pytest.param(
        phase_block() + "[slowdown]\nwindow = 0\n",
        "slowdown.window: Input should be greater than or equal to 1",
        id="slowdown-window-zero",
    ),
    pytest.param(
        phase_block() + '[slowdown]\nmin_samples = "5"\n',
        "slowdown.min_samples: Input should be a valid integer",
        id="slowdown-min-samples-as-string",
    ),
    pytest.param(
        phase_block() + "[slowdown]\nthreshold_pct = 40\n",
        "slowdown.threshold_pct: unknown key 'threshold_pct'",
        id="slowdown-threshold-is-per-phase",
    ),
    pytest.param("retention_days = 7\n", "phases: required key is missing", id="no-phases"),
    pytest.param(
        "retention_days = 7\nphases = []\n",
        "phases: the registry declares no [[phases]]",
        id="empty-phases",
    ),
    pytest.param(
        phase_block() + "[rerun\n",
        "invalid TOML: ",
        id="invalid-toml",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_registry_names_file_and_field(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="pipeline.toml")
    lines = str(caught.value).splitlines()
    assert all(line.startswith("pipeline.toml: ") for line in lines)
    assert any(line.startswith(f"pipeline.toml: {message}") for line in lines), lines
    assert isinstance(caught.value, ValueError)


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(textwrap.dedent(MINIMAL) + "max_wait = \n")
    with pytest.raises(RegistryError, match=r"pipeline\.toml: invalid TOML: .*line 7") as caught:
        load_registry(path)
    assert str(path) in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    text = phase_block(rule='"x"', on_deadline='"y"')
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="pipeline.toml")
    assert len(str(caught.value).splitlines()) == 2


def test_sla_accepts_toml_local_time() -> None:
    loaded = parse_registry(phase_block(sla="12:45:00"))
    assert loaded.phase(4).sla == time(12, 45)


def test_registry_is_frozen(registry: Registry) -> None:
    with pytest.raises(ValueError, match="frozen"):
        registry.retention_days = 1  # type: ignore[misc]
