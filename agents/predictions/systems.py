"""Prediction systems, pluggable by ``system_id`` and switched on by the registry's [[systems]].

A system is anything with ``system_id``, ``model_version`` and ``predict(features, line)``
returning ``(predicted_points, confidence 0-100, recommendation)``
(:class:`~phaseflow.agents.predictions.system_base.PredictionSystem`). Systems are pure and
deterministic (same features and line, same answer), so a re-sent request yields the same prediction
under the same key. Five ship (this module holds the first two and the registry of all):

* ``moving_average_baseline_v1``: a weighted recent average (last 5 / 10 / all loaded games).
* ``zone_matchup_v1``: a recent average adjusted by the home/away split and by how the player
  scored against the same opponent, each adjustment shrunk by how many games back it up.
* ``similarity_balanced_v1`` (:mod:`phaseflow.agents.predictions.similarity`): the past games most
  like tonight's (venue, opponent, rest, recency, minutes), weighted by similarity.
* ``recency_trend_v1`` (:mod:`phaseflow.agents.predictions.trend`): an exponentially weighted
  scoring rate times expected minutes, plus a bounded linear trend.
* ``ensemble_v1`` (:mod:`phaseflow.agents.predictions.ensemble`): the four above, weighted by
  confidence, more confident when they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from phaseflow.agents.predictions.ensemble import Ensemble
from phaseflow.agents.predictions.features import PlayerFeatures
from phaseflow.agents.predictions.similarity import SimilarityBalanced
from phaseflow.agents.predictions.system_base import (
    PredictionSystem,
    SystemOutput,
    clamp,
    decide,
    mean,
    no_history,
    points_spread,
)
from phaseflow.agents.predictions.trend import RecencyTrend
from phaseflow.streams.core.registry import Registry, SystemSpec
from phaseflow.streams.core.system_ids import add_system_id

__all__ = [
    "SYSTEM_FACTORIES",
    "Ensemble",
    "MovingAverageBaseline",
    "PredictionSystem",
    "RecencyTrend",
    "SimilarityBalanced",
    "SystemOutput",
    "UnknownSystemError",
    "ZoneMatchup",
    "default_ensemble",
    "enabled_systems",
    "register_system",
]


class UnknownSystemError(KeyError):
    """The registry enables a system_id that no code implements."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class MovingAverageBaseline:
    """Weighted recent average: 50 % last 5 games, 30 % last 10, 20 % everything loaded."""

    system_id: str = "moving_average_baseline_v1"
    model_version: str = "ma-5-10-all@1"
    pass_margin: float = 1.0

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        games = features.games
        if not games:
            return no_history(line)
        points = [g.points for g in games]
        predicted = 0.5 * mean(points[:5]) + 0.3 * mean(points[:10]) + 0.2 * mean(points)
        return decide(
            predicted,
            line,
            points_spread(games[:10]),
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
            return no_history(line)
        overall = mean([g.points for g in games])
        predicted = mean([g.points for g in games[: self.recent_games]])
        if features.is_home is not None:
            venue = [g.points for g in games if g.is_home is features.is_home]
            if venue:
                weight = len(venue) / (len(venue) + self.venue_shrink)
                predicted += (mean(venue) - overall) * weight
        if features.opponent is not None:
            versus = [g for g in games if g.opponent == features.opponent]
            if versus:
                # Minutes-normalised: a short night against them says less about the matchup.
                per_minute = [g.points / g.minutes for g in versus if g.minutes > 0]
                usual = sum(g.points for g in games) / max(sum(g.minutes for g in games), 1.0)
                if per_minute and usual > 0:
                    factor = mean(per_minute) / usual
                    weight = len(per_minute) / (len(per_minute) + self.opponent_shrink)
                    predicted *= 1 + (clamp(factor, 0.5, 1.5) - 1) * weight
        return decide(
            predicted,
            line,
            points_spread(games[: self.recent_games]),
            len(games),
            pass_margin=self.pass_margin,
            full_sample=20,
        )


def default_ensemble() -> Ensemble:
    """The ensemble over its own instances of the four other systems: what it answers does not
    depend on which systems the registry enables, nor in which order."""
    return Ensemble(
        members=(MovingAverageBaseline(), ZoneMatchup(), SimilarityBalanced(), RecencyTrend())
    )


#: Every system phaseflow can run, by ``system_id``. Add one with :func:`register_system`. The
#: built-in ids are also the registry's (phaseflow.streams.core.system_ids; a test keeps them
#: equal).
SYSTEM_FACTORIES: Final[dict[str, Callable[[], PredictionSystem]]] = {
    "moving_average_baseline_v1": MovingAverageBaseline,
    "zone_matchup_v1": ZoneMatchup,
    "similarity_balanced_v1": SimilarityBalanced,
    "recency_trend_v1": RecencyTrend,
    "ensemble_v1": default_ensemble,
}


def register_system(system_id: str, factory: Callable[[], PredictionSystem]) -> None:
    """Make ``system_id`` available to the registry's [[systems]] (plugins, tests)."""
    SYSTEM_FACTORIES[system_id] = factory
    add_system_id(system_id)


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
