"""Prediction systems: deterministic, sensible, pluggable, chosen by the registry."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from agents.predictions.features import GameLog, PlayerFeatures
from agents.predictions.systems import (
    MovingAverageBaseline,
    SystemOutput,
    UnknownSystemError,
    ZoneMatchup,
    enabled_systems,
)
from streams.registry import load_registry, parse_registry
from tests.unit.prediction_fakes import DAY


def games(points: list[float], *, opponent: str = "BOS", home: bool = True) -> tuple[GameLog, ...]:
    return tuple(
        GameLog(DAY - timedelta(days=2 * (i + 1)), p, 30.0, opponent, home)
        for i, p in enumerate(points)
    )


def features(points: list[float], **kwargs: object) -> PlayerFeatures:
    return PlayerFeatures("p", DAY, games(points), **kwargs)  # type: ignore[arg-type]


def test_moving_average_weights_recent_games() -> None:
    system = MovingAverageBaseline()
    hot = features([30] * 5 + [10] * 15)
    out = system.predict(hot, Decimal("20.5"))
    # 0.5 * 30 + 0.3 * 20 + 0.2 * 15 = 24
    assert out.predicted_points == pytest.approx(24.0)
    assert out.recommendation == "OVER"
    assert 0 <= out.confidence <= 100


def test_small_edge_is_a_pass_and_under_below_the_line() -> None:
    system = MovingAverageBaseline()
    steady = features([20] * 20)
    assert system.predict(steady, Decimal("20.5")).recommendation == "PASS"
    assert system.predict(steady, Decimal("25.5")).recommendation == "UNDER"


def test_no_line_and_no_history() -> None:
    system = MovingAverageBaseline()
    assert system.predict(features([20] * 10), None).recommendation == "NO_LINE"
    assert system.predict(features([]), Decimal("20.5")) == SystemOutput(20.5, 0.0, "PASS")
    assert system.predict(features([]), None) == SystemOutput(0.0, 0.0, "NO_LINE")


def test_zone_matchup_adjusts_for_opponent_and_venue() -> None:
    system = ZoneMatchup()
    logs = games([20] * 20, opponent="NYK", home=False) + games([30] * 4, opponent="BOS", home=True)
    base = PlayerFeatures("p", DAY, logs)
    versus_bos_home = PlayerFeatures("p", DAY, logs, opponent="BOS", is_home=True)
    versus_nyk_away = PlayerFeatures("p", DAY, logs, opponent="NYK", is_home=False)
    line = Decimal("21.5")
    plain = system.predict(base, line).predicted_points
    assert system.predict(versus_bos_home, line).predicted_points > plain
    assert system.predict(versus_nyk_away, line).predicted_points < plain


def test_systems_are_deterministic() -> None:
    f = features([12, 25, 18, 30, 9, 22, 17, 20, 14, 28], opponent="BOS", is_home=True)
    for system in (MovingAverageBaseline(), ZoneMatchup()):
        assert system.predict(f, Decimal("19.5")) == system.predict(f, Decimal("19.5"))


def test_registry_enables_the_default_systems_in_order() -> None:
    chosen = enabled_systems(load_registry(None))
    assert [s.system_id for s, _ in chosen] == ["moving_average_baseline_v1", "zone_matchup_v1"]
    assert chosen[0][1].breaker_threshold == 5


def test_disabled_and_unknown_systems() -> None:
    base = '[[phases]]\nphase = 1\nname = "a"\nprocessors = ["x"]\n'
    off = parse_registry(
        base + '[[systems]]\nsystem_id = "zone_matchup_v1"\nenabled = false\n'
        '[[systems]]\nsystem_id = "moving_average_baseline_v1"\n'
    )
    assert [s.system_id for s, _ in enabled_systems(off)] == ["moving_average_baseline_v1"]
    unknown = parse_registry(base + '[[systems]]\nsystem_id = "nope_v9"\n')
    with pytest.raises(UnknownSystemError, match="nope_v9"):
        enabled_systems(unknown)
