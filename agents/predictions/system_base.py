"""What every prediction system shares: the interface and how an estimate becomes a call.

A system turns a player's features into an estimate of tonight's points; :func:`decide` turns
that estimate into a recommendation against the line and a 0-100 confidence, the same way for
every system, so their outputs are comparable (and an ensemble can weigh them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple, Protocol

from phaseflow.agents.predictions.features import GameLog, PlayerFeatures
from phaseflow.models.fields import Recommendation


class SystemOutput(NamedTuple):
    """One system's answer for one line."""

    predicted_points: float
    confidence: float  # 0-100
    recommendation: Recommendation


class PredictionSystem(Protocol):
    """The interface every prediction system implements."""

    @property
    def system_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput: ...


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def decide(
    predicted: float,
    line: Decimal | None,
    spread: float,
    games: float,
    *,
    pass_margin: float,
    full_sample: float,
) -> SystemOutput:
    """Recommendation and confidence from the edge over the line, in units of the spread.

    Confidence grows with the edge (z-score against the player's game-to-game spread) and with
    the sample size (``games`` out of ``full_sample``); an edge under ``pass_margin`` points is a
    PASS.
    """
    predicted = round(max(0.0, predicted), 2)
    sample = min(1.0, games / full_sample)
    spread = max(spread, 1.0)
    if line is None:
        # No line: how steady the player is says how much to trust the number.
        steadiness = clamp(1.0 - spread / max(predicted, 1.0), 0.0, 1.0)
        return SystemOutput(predicted, round(100 * steadiness * sample, 1), "NO_LINE")
    edge = predicted - float(line)
    z = abs(edge) / spread
    confidence = round(clamp((35.0 + 45.0 * math.tanh(z)) * sample, 0.0, 100.0), 1)
    if abs(edge) < pass_margin:
        return SystemOutput(predicted, confidence, "PASS")
    return SystemOutput(predicted, confidence, "OVER" if edge > 0 else "UNDER")


def no_history(line: Decimal | None) -> SystemOutput:
    """Nothing to predict from: the line itself (or 0 without one), zero confidence."""
    if line is None:
        return SystemOutput(0.0, 0.0, "NO_LINE")
    return SystemOutput(float(line), 0.0, "PASS")


def points_spread(games: Sequence[GameLog]) -> float:
    """Game-to-game standard deviation of points (0 for fewer than two games)."""
    if len(games) < 2:
        return 0.0
    # Plain floats: statistics.pstdev computes with exact fractions, ~10x slower, and this runs
    # for every (player, system, line).
    points = [g.points for g in games]
    average = sum(points) / len(points)
    return math.sqrt(sum((p - average) ** 2 for p in points) / len(points))
