"""Prediction systems, pluggable by ``system_id`` and switched on by the registry's [[systems]].

A system is anything with ``system_id``, ``model_version`` and ``predict(features, line)``
returning ``(predicted_points, confidence 0-100, recommendation)``. Systems are pure and
deterministic (same features and line, same answer), so a re-sent request yields the same
prediction under the same key. Two ship here:

* ``moving_average_baseline_v1``: a weighted recent average (last 5 / 10 / all loaded games).
* ``zone_matchup_v1``: a recent average adjusted by the home/away split and by how the player
  scored against the same opponent, each adjustment shrunk by how many games back it up.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple, Protocol

from agents.predictions.features import GameLog, PlayerFeatures
from models.events import Recommendation
from streams.registry import Registry, SystemSpec


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


class UnknownSystemError(KeyError):
    """The registry enables a system_id that no code implements."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _decide(
    predicted: float,
    line: Decimal | None,
    spread: float,
    games: int,
    *,
    pass_margin: float,
    full_sample: int,
) -> SystemOutput:
    """Recommendation and confidence from the edge over the line, in units of the spread.

    Confidence grows with the edge (z-score against the player's game-to-game spread) and with
    the sample size; an edge under ``pass_margin`` points is a PASS.
    """
    predicted = round(max(0.0, predicted), 2)
    sample = min(1.0, games / full_sample)
    spread = max(spread, 1.0)
    if line is None:
        # No line: how steady the player is says how much to trust the number.
        steadiness = _clamp(1.0 - spread / max(predicted, 1.0), 0.0, 1.0)
        return SystemOutput(predicted, round(100 * steadiness * sample, 1), "NO_LINE")
    edge = predicted - float(line)
    z = abs(edge) / spread
    confidence = round(_clamp((35.0 + 45.0 * math.tanh(z)) * sample, 0.0, 100.0), 1)
    if abs(edge) < pass_margin:
        return SystemOutput(predicted, confidence, "PASS")
    return SystemOutput(predicted, confidence, "OVER" if edge > 0 else "UNDER")


def _no_history(line: Decimal | None) -> SystemOutput:
    if line is None:
        return SystemOutput(0.0, 0.0, "NO_LINE")
    return SystemOutput(float(line), 0.0, "PASS")


def _spread(games: Sequence[GameLog]) -> float:
    points = [g.points for g in games]
    return statistics.pstdev(points) if len(points) > 1 else 0.0


@dataclass(frozen=True)
class MovingAverageBaseline:
    """Weighted recent average: 50 % last 5 games, 30 % last 10, 20 % everything loaded."""

    system_id: str = "moving_average_baseline_v1"
    model_version: str = "ma-5-10-all@1"
    pass_margin: float = 1.0

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        games = features.games
        if not games:
            return _no_history(line)
        points = [g.points for g in games]
        predicted = 0.5 * _mean(points[:5]) + 0.3 * _mean(points[:10]) + 0.2 * _mean(points)
        return _decide(
            predicted,
            line,
            _spread(games[:10]),
            len(games),
            pass_margin=self.pass_margin,
            full_sample=10,
        )


@dataclass(frozen=True)
class ZoneMatchup:
    """Recent average, adjusted for home/away and for this opponent (shrunk by sample size)."""

    system_id: str = "zone_matchup_v1"
    model_version: str = "zone-matchup@1"
    recent_games: int = 20
    venue_shrink: float = 10.0  # games at which a venue split counts half
    opponent_shrink: float = 3.0  # games at which the opponent history counts half
    pass_margin: float = 1.5

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        games = features.games
        if not games:
            return _no_history(line)
        overall = _mean([g.points for g in games])
        predicted = _mean([g.points for g in games[: self.recent_games]])
        if features.is_home is not None:
            venue = [g.points for g in games if g.is_home is features.is_home]
            if venue:
                weight = len(venue) / (len(venue) + self.venue_shrink)
                predicted += (_mean(venue) - overall) * weight
        if features.opponent is not None:
            versus = [g for g in games if g.opponent == features.opponent]
            if versus:
                # Minutes-normalised: a short night against them says less about the matchup.
                per_minute = [g.points / g.minutes for g in versus if g.minutes > 0]
                usual = sum(g.points for g in games) / max(sum(g.minutes for g in games), 1.0)
                if per_minute and usual > 0:
                    factor = _mean(per_minute) / usual
                    weight = len(per_minute) / (len(per_minute) + self.opponent_shrink)
                    predicted *= 1 + (_clamp(factor, 0.5, 1.5) - 1) * weight
        return _decide(
            predicted,
            line,
            _spread(games[: self.recent_games]),
            len(games),
            pass_margin=self.pass_margin,
            full_sample=20,
        )


#: Every system phaseflow can run, by ``system_id``. Add one with :func:`register_system`.
SYSTEM_FACTORIES: Final[dict[str, Callable[[], PredictionSystem]]] = {
    "moving_average_baseline_v1": MovingAverageBaseline,
    "zone_matchup_v1": ZoneMatchup,
}


def register_system(system_id: str, factory: Callable[[], PredictionSystem]) -> None:
    """Make ``system_id`` available to the registry's [[systems]] (plugins, tests)."""
    SYSTEM_FACTORIES[system_id] = factory


def enabled_systems(registry: Registry) -> list[tuple[PredictionSystem, SystemSpec]]:
    """The systems the registry switches on, in file order, each with its spec (breaker)."""
    chosen: list[tuple[PredictionSystem, SystemSpec]] = []
    for spec in registry.enabled_systems:
        factory = SYSTEM_FACTORIES.get(spec.system_id)
        if factory is None:
            known = ", ".join(sorted(SYSTEM_FACTORIES))
            raise UnknownSystemError(
                f"registry enables prediction system {spec.system_id!r}, which is not "
                f"implemented (known: {known})"
            )
        system = factory()
        if system.system_id != spec.system_id:
            raise UnknownSystemError(
                f"factory for {spec.system_id!r} built a system with id {system.system_id!r}"
            )
        chosen.append((system, spec))
    return chosen
