"""``recency_trend_v1``: recent form as a scoring rate, plus where that rate is heading.

Over the last ``window`` games the player actually played, weights halve every
``half_life_games`` games back. Points per minute (ratio of weighted sums, so a six-minute
cameo does not swing it) times the weighted minutes is the base estimate: a player whose minutes
changed is judged by his current role. The trend is the minutes-weighted least-squares slope of
points per minute over the last ``trend_games`` games, projected from the weighted average's
mean age to the next game and bounded to ``max_trend_share`` of the rate, so a hot or cold
streak moves the estimate without running away with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from phaseflow.agents.predictions.features import GameLog, PlayerFeatures
from phaseflow.agents.predictions.system_base import (
    SystemOutput,
    clamp,
    decide,
    no_history,
    points_spread,
)


@dataclass(frozen=True)
class RecencyTrend:
    """Exponentially weighted scoring rate x expected minutes, plus a bounded linear trend."""

    system_id: str = "recency_trend_v1"
    model_version: str = "ewma-rate-trend@1"
    window: int = 20
    half_life_games: float = 8.0
    trend_games: int = 20
    max_trend_share: float = 0.05
    pass_margin: float = 1.0

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        played = [g for g in features.games if g.minutes > 0][: self.window]
        if not played:
            # No minutes in the loaded games: no rate to project, same as no history.
            return no_history(line)
        weights = [0.5 ** (age / self.half_life_games) for age in range(len(played))]
        total = sum(weights)
        rate = sum(w * g.points for w, g in zip(weights, played, strict=True)) / sum(
            w * g.minutes for w, g in zip(weights, played, strict=True)
        )
        minutes = sum(w * g.minutes for w, g in zip(weights, played, strict=True)) / total
        mean_age = sum(age * w for age, w in enumerate(weights)) / total
        slope = _rate_slope(played[: self.trend_games])
        bound = self.max_trend_share * rate
        rate += clamp(slope * (mean_age + 1.0), -bound, bound)
        return decide(
            rate * minutes,
            line,
            points_spread(played),
            len(played),
            pass_margin=self.pass_margin,
            full_sample=self.window,
        )


def _rate_slope(games: Sequence[GameLog]) -> float:
    """Change of points per minute per game, newest last (minutes-weighted least squares)."""
    if len(games) < 3:
        return 0.0
    # x counts forward in time: the newest game (index 0) has the largest x.
    xs = [float(-age) for age in range(len(games))]
    ys = [g.points / g.minutes for g in games]
    ws = [g.minutes for g in games]
    total = sum(ws)
    x_mean = sum(w * x for w, x in zip(ws, xs, strict=True)) / total
    y_mean = sum(w * y for w, y in zip(ws, ys, strict=True)) / total
    covariance = sum(w * (x - x_mean) * (y - y_mean) for w, x, y in zip(ws, xs, ys, strict=True))
    variance = sum(w * (x - x_mean) ** 2 for w, x in zip(ws, xs, strict=True))
    return covariance / variance if variance > 0 else 0.0
