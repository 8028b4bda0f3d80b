"""Prediction systems: deterministic, sensible, pluggable, chosen by the registry."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest

from phaseflow.agents.predictions.features import GameLog, PlayerFeatures
from phaseflow.agents.predictions.systems import (
    Ensemble,
    MovingAverageBaseline,
    PredictionSystem,
    RecencyTrend,
    SimilarityBalanced,
    SystemOutput,
    UnknownSystemError,
    ZoneMatchup,
    default_ensemble,
    enabled_systems,
)
from phaseflow.streams.core.registry import Registry, RegistryError, load_registry, parse_registry
from phaseflow.streams.seed import generate
from tests.fixtures.prediction_fakes import DAY


def games(points: list[float], *, opponent: str = "BOS", home: bool = True) -> tuple[GameLog, ...]:
    return tuple(
        GameLog(DAY - timedelta(days=2 * (i + 1)), p, 30.0, opponent, home)
        for i, p in enumerate(points)
    )


def features(points: list[float], **kwargs: object) -> PlayerFeatures:
    return PlayerFeatures("p", DAY, games(points), **kwargs)  # type: ignore[arg-type]


def all_systems() -> list[PredictionSystem]:
    return [
        factory()
        for factory in (
            MovingAverageBaseline,
            ZoneMatchup,
            SimilarityBalanced,
            RecencyTrend,
            default_ensemble,
        )
    ]


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
    for system in all_systems():
        assert system.predict(f, Decimal("19.5")) == system.predict(f, Decimal("19.5"))
        assert system.predict(f, None) == system.predict(f, None)


def test_registry_enables_the_default_systems_in_order() -> None:
    chosen = enabled_systems(load_registry(None))
    assert [s.system_id for s, _ in chosen] == [
        "moving_average_baseline_v1",
        "zone_matchup_v1",
        "similarity_balanced_v1",
        "recency_trend_v1",
        "ensemble_v1",
    ]
    assert all(spec.breaker_threshold == 5 for _, spec in chosen)
    assert chosen[0][1].breaker_threshold == 5


def test_disabled_and_unknown_systems() -> None:
    base = '[[phases]]\nphase = 1\nname = "a"\nprocessors = ["x"]\n'
    off = parse_registry(
        base + '[[systems]]\nsystem_id = "zone_matchup_v1"\nenabled = false\n'
        '[[systems]]\nsystem_id = "moving_average_baseline_v1"\n'
    )
    assert [s.system_id for s, _ in enabled_systems(off)] == ["moving_average_baseline_v1"]
    # The loader rejects an unknown id; a Registry built without it still fails at wiring time.
    with pytest.raises(RegistryError, match=r"systems\[0\]\.system_id: 'nope_v9' is not"):
        parse_registry(base + '[[systems]]\nsystem_id = "nope_v9"\n')
    unknown = Registry.model_validate(tomllib.loads(base + '[[systems]]\nsystem_id = "nope_v9"\n'))
    with pytest.raises(UnknownSystemError, match="nope_v9"):
        enabled_systems(unknown)


def logs(spec: list[tuple[int, float, float, str, bool]]) -> tuple[GameLog, ...]:
    """Games from (days before DAY, points, minutes, opponent, home), newest first."""
    return tuple(
        GameLog(DAY - timedelta(days=days), points, minutes, opponent, home)
        for days, points, minutes, opponent, home in sorted(spec)
    )


def test_no_history_is_a_pass_at_the_line_for_every_system() -> None:
    for system in all_systems():
        assert system.predict(features([]), Decimal("20.5")) == SystemOutput(20.5, 0.0, "PASS")
        assert system.predict(features([]), None) == SystemOutput(0.0, 0.0, "NO_LINE")


def test_confidence_stays_within_0_and_100_on_the_synthetic_slate() -> None:
    data = generate(DAY, players=40, history_games=30)
    history: dict[str, list[GameLog]] = {}
    for row in data.history:
        history.setdefault(row["player_lookup"], []).append(
            GameLog(
                date.fromisoformat(row["game_date"]),
                float(row["points"]),
                float(row["minutes"]),
                row["opponent"],
                row["is_home"],
            )
        )
    context = {row["player_lookup"]: row for row in data.context}
    systems = all_systems()
    calls: set[str] = set()
    for player, games_played in history.items():
        f = PlayerFeatures(
            player,
            DAY,
            tuple(sorted(games_played, key=lambda g: g.game_date, reverse=True)),
            opponent=context[player]["opponent"],
            is_home=context[player]["is_home"],
        )
        for line in (None, Decimal("0.5"), Decimal("12.5"), Decimal("25.5"), Decimal("60.5")):
            for system in systems:
                out = system.predict(f, line)
                assert 0 <= out.confidence <= 100, (system.system_id, out)
                assert out.predicted_points >= 0
                calls.add(out.recommendation)
    assert calls == {"OVER", "UNDER", "PASS", "NO_LINE"}


def similar_and_other_games(similar_points: float, other_points: float) -> tuple[GameLog, ...]:
    """A game every other day, 30 minutes each: every sixth at home against BOS scoring
    ``similar_points``, the others away against NYK scoring ``other_points``."""
    return logs(
        [
            (2 * i + 2, similar_points, 30.0, "BOS", True)
            if i % 6 == 0
            else (2 * i + 2, other_points, 30.0, "NYK", False)
            for i in range(60)
        ]
    )


def test_similarity_predicts_from_the_games_like_tonight() -> None:
    system = SimilarityBalanced()
    history = similar_and_other_games(similar_points=30, other_points=10)
    # Tonight like the 30-point games (at home against BOS) ...
    like_them = PlayerFeatures("p", DAY, history, opponent="BOS", is_home=True)
    out = system.predict(like_them, Decimal("20.5"))
    assert out.recommendation == "OVER"
    assert out.predicted_points > 25
    # ... although most past games, and so every average of them, are far below the line.
    assert MovingAverageBaseline().predict(like_them, Decimal("20.5")).recommendation == "UNDER"
    unlike = PlayerFeatures("p", DAY, history, opponent="NYK", is_home=False)
    assert system.predict(unlike, Decimal("20.5")).recommendation == "UNDER"


def test_similarity_counts_rest_days() -> None:
    # Back-to-backs (a game the day before) were 12-point nights, rested games 28.
    spec: list[tuple[int, float, float, str, bool]] = []
    for block in range(12):
        start = 6 * block + 1
        spec += [(start, 12.0, 30.0, "BOS", True), (start + 1, 28.0, 30.0, "BOS", True)]
    history = logs(spec)
    system = SimilarityBalanced()
    tonight_tired = PlayerFeatures("p", DAY, history, opponent="BOS", is_home=True)
    rested = PlayerFeatures("p", DAY + timedelta(days=3), history, opponent="BOS", is_home=True)
    assert system.predict(tonight_tired, Decimal("20.5")).recommendation == "UNDER"
    assert system.predict(rested, Decimal("20.5")).recommendation == "OVER"


def test_similarity_is_more_confident_with_more_similar_games() -> None:
    system = SimilarityBalanced()
    many = logs([(2 * i + 2, 30.0, 30.0, "BOS", True) for i in range(20)])
    one = logs(
        [(2, 30.0, 30.0, "BOS", True)] + [(2 * i + 4, 30.0, 30.0, "NYK", False) for i in range(19)]
    )
    line = Decimal("24.5")
    with_many = system.predict(PlayerFeatures("p", DAY, many, "BOS", True), line)
    with_one = system.predict(PlayerFeatures("p", DAY, one, "BOS", True), line)
    assert with_many.predicted_points == with_one.predicted_points == 30.0
    assert with_many.recommendation == with_one.recommendation == "OVER"
    assert with_many.confidence > with_one.confidence


def steady_rate(points_per_minute: list[float], minutes: list[float]) -> PlayerFeatures:
    """Newest first: game i scored ``points_per_minute[i] * minutes[i]``."""
    spec = [
        (2 * i + 2, rate * played, played, "BOS", True)
        for i, (rate, played) in enumerate(zip(points_per_minute, minutes, strict=True))
    ]
    return PlayerFeatures("p", DAY, logs(spec))


def test_recency_trend_follows_a_rising_or_falling_rate_within_its_bound() -> None:
    flat_trend = RecencyTrend(max_trend_share=0.0)
    system = RecencyTrend()
    rising = steady_rate([1.0 - 0.02 * i for i in range(20)], [30.0] * 20)
    falling = steady_rate([0.6 + 0.02 * i for i in range(20)], [30.0] * 20)
    for f, direction in ((rising, 1), (falling, -1)):
        plain = flat_trend.predict(f, None).predicted_points
        trended = system.predict(f, None).predicted_points
        assert (trended - plain) * direction > 0
        assert abs(trended - plain) <= system.max_trend_share * plain + 0.01


def test_recency_trend_projects_the_current_role() -> None:
    # Same scoring rate throughout; the last 6 games in a 36-minute role instead of 18.
    promoted = steady_rate([1.0] * 20, [36.0] * 6 + [18.0] * 14)
    out = RecencyTrend().predict(promoted, Decimal("24.5"))
    assert out.recommendation == "OVER"
    everything = sum(g.points for g in promoted.games) / len(promoted.games)
    assert out.predicted_points > everything
    # A cameo (6 minutes) in the newest game says little about the rate.
    cameo = steady_rate([1.0, *[1.0] * 19], [6.0, *[30.0] * 19])
    assert RecencyTrend().predict(cameo, None).predicted_points > 25


@dataclass(frozen=True)
class Fixed:
    """A member that always says the same thing (to test how the ensemble combines)."""

    points: float
    confidence: float
    system_id: str = "fixed_v1"
    model_version: str = "x"

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:  # noqa: ARG002
        return SystemOutput(self.points, self.confidence, "PASS")


def test_ensemble_weighs_members_by_confidence() -> None:
    ensemble = Ensemble(members=(Fixed(30.0, 90.0), Fixed(20.0, 10.0)))
    out = ensemble.predict(features([25] * 20), Decimal("22.5"))
    assert out.predicted_points == pytest.approx((30 * 91 + 20 * 11) / 102, abs=0.01)
    assert out.recommendation == "OVER"


def test_ensemble_is_more_confident_when_its_members_agree() -> None:
    f = features([24, 26] * 10)
    line = Decimal("20.5")
    agreeing = Ensemble(members=(Fixed(25.0, 60.0), Fixed(25.0, 60.0))).predict(f, line)
    scattered = Ensemble(members=(Fixed(22.0, 60.0), Fixed(28.0, 60.0))).predict(f, line)
    split = Ensemble(members=(Fixed(18.0, 60.0), Fixed(32.0, 60.0))).predict(f, line)
    assert agreeing.predicted_points == scattered.predicted_points == split.predicted_points
    assert agreeing.recommendation == scattered.recommendation == split.recommendation == "OVER"
    assert agreeing.confidence > scattered.confidence > split.confidence
    single = MovingAverageBaseline().predict(f, line)
    assert agreeing.confidence > single.confidence  # agreement adds to a plain call's confidence


def test_ensemble_runs_its_own_members_whatever_the_registry_enables() -> None:
    assert [m.system_id for m in default_ensemble().members] == [
        "moving_average_baseline_v1",
        "zone_matchup_v1",
        "similarity_balanced_v1",
        "recency_trend_v1",
    ]
    base = '[[phases]]\nphase = 1\nname = "a"\nprocessors = ["x"]\n'
    alone = parse_registry(base + '[[systems]]\nsystem_id = "ensemble_v1"\n')
    reordered = parse_registry(
        base + '[[systems]]\nsystem_id = "ensemble_v1"\n'
        '[[systems]]\nsystem_id = "zone_matchup_v1"\n'
        '[[systems]]\nsystem_id = "moving_average_baseline_v1"\nenabled = false\n'
    )
    [(only, _)] = enabled_systems(alone)
    (first, _), _ = enabled_systems(reordered)
    default = next(
        s for s, _ in enabled_systems(load_registry(None)) if s.system_id == "ensemble_v1"
    )
    f = features([12, 25, 18, 30, 9, 22, 17, 20, 14, 28], opponent="BOS", is_home=True)
    for line in (Decimal("19.5"), None):
        assert only.predict(f, line) == first.predict(f, line) == default.predict(f, line)
