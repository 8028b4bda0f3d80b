"""``similarity_balanced_v1``: predict from the past games most like tonight's.

Each past game is placed by its context: home or away, the opponent, days of rest before it (the
gap to the game before), how long ago it was, and how many minutes the player played. Its
distance to tonight is a weighted sum of per-feature mismatches, each scaled to 0..1; its
similarity is ``exp(-distance)``. The prediction is the similarity-weighted mean of the points in
the ``neighbours`` nearest games. Confidence follows
:func:`~phaseflow.agents.predictions.system_base.decide` with the sample being the *soft count* of
similar games (the sum of all similarities): many games played in tonight's circumstances give a
full sample, a context never seen before gives little.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from phaseflow.agents.predictions.features import GameLog, PlayerFeatures
from phaseflow.agents.predictions.system_base import SystemOutput, decide, no_history

#: Mismatch of a feature that one side does not know (no context, the oldest game's rest).
UNKNOWN: Final = 0.5


def _mismatch(tonight: object, then: object) -> float:
    if tonight is None or then is None:
        return UNKNOWN
    return 0.0 if tonight == then else 1.0


@dataclass(frozen=True)
class SimilarityBalanced:
    """k nearest past games by venue, opponent, rest, recency and minutes."""

    system_id: str = "similarity_balanced_v1"
    model_version: str = "similarity-knn@1"
    neighbours: int = 16
    venue_weight: float = 1.0
    opponent_weight: float = 1.0
    rest_weight: float = 0.75
    rest_cap_days: int = 3  # beyond this, more rest is the same context
    recency_weight: float = 1.0
    recency_scale_days: float = 120.0  # a game this old is fully "not recent"
    minutes_weight: float = 1.5
    minutes_scale: float = 10.0  # this far from the usual minutes is fully "another role"
    usual_minutes_games: int = 10
    full_similar_games: float = 6.0  # soft count of similar games that makes a full sample
    pass_margin: float = 1.5

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        games = features.games
        if not games:
            return no_history(line)
        scored = sorted(zip(self._distances(features), range(len(games)), strict=True))
        nearest = scored[: self.neighbours]
        weights = [math.exp(-distance) for distance, _ in nearest]
        points = [games[index].points for _, index in nearest]
        total = sum(weights)
        predicted = sum(w * p for w, p in zip(weights, points, strict=True)) / total
        spread = math.sqrt(
            sum(w * (p - predicted) ** 2 for w, p in zip(weights, points, strict=True)) / total
        )
        similar_games = sum(math.exp(-distance) for distance, _ in scored)
        return decide(
            predicted,
            line,
            spread,
            similar_games,
            pass_margin=self.pass_margin,
            full_sample=self.full_similar_games,
        )

    def _distances(self, features: PlayerFeatures) -> list[float]:
        """Distance of each past game (newest first) to tonight's context."""
        games = features.games
        cap = self.rest_cap_days
        rest_tonight = min(_rest_days(features.game_date, games[0].game_date), cap)
        usual_minutes = _usual_minutes(games, self.usual_minutes_games)
        distances: list[float] = []
        for index, game in enumerate(games):
            if index + 1 < len(games):
                rest_then = min(_rest_days(game.game_date, games[index + 1].game_date), cap)
                rest = abs(rest_tonight - rest_then) / cap
            else:
                rest = UNKNOWN
            days_ago = max((features.game_date - game.game_date).days, 0)
            minutes_off = abs(game.minutes - usual_minutes) / self.minutes_scale
            distances.append(
                self.venue_weight * _mismatch(features.is_home, game.is_home)
                + self.opponent_weight * _mismatch(features.opponent, game.opponent)
                + self.rest_weight * rest
                + self.recency_weight * min(days_ago / self.recency_scale_days, 1.0)
                + self.minutes_weight * min(minutes_off, 1.0)
            )
        return distances


def _rest_days(game_day: date, previous_game_day: date) -> int:
    """Days off between two games (back-to-back = 0)."""
    return max((game_day - previous_game_day).days - 1, 0)


def _usual_minutes(games: tuple[GameLog, ...], recent: int) -> float:
    """Median minutes of the recent games the player played in (DNPs say nothing of the role)."""
    played = [g.minutes for g in games[:recent] if g.minutes > 0]
    return statistics.median(played) if played else 0.0
