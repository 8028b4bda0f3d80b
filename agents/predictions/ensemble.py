"""``ensemble_v1``: the other systems' answers combined, trusted more when they agree.

Each member predicts the same line; the estimate is the mean of their predicted points weighted
by their confidence (plus one, so a member with no confidence still counts a little). The base
confidence comes from :func:`~phaseflow.agents.predictions.system_base.decide` like every system's.
It is then scaled by the members' agreement, between ``1 - disagreement_penalty`` (they scatter and
split over the line) and ``1 + agreement_bonus`` (they predict the same number on the same side):
agreement is the closeness of their predictions (``1 / (1 + dispersion / agreement_scale)``,
dispersion being their confidence-weighted standard deviation in points) times the confidence
share of members on the ensemble's side of the line.

The members are given to the constructor (the registry's factory builds its own instances of the
four other systems), so the answer depends neither on which systems the registry enables nor on
their order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from phaseflow.agents.predictions.features import PlayerFeatures
from phaseflow.agents.predictions.system_base import (
    PredictionSystem,
    SystemOutput,
    clamp,
    decide,
    no_history,
    points_spread,
)


@dataclass(frozen=True)
class Ensemble:
    """Confidence-weighted mean of the members; confidence scaled by how much they agree."""

    members: tuple[PredictionSystem, ...]
    system_id: str = "ensemble_v1"
    model_version: str = "confidence-weighted@1"
    agreement_scale: float = 2.0  # points of member dispersion that halve the closeness
    agreement_bonus: float = 0.1
    disagreement_penalty: float = 0.4
    recent_games: int = 10
    full_sample: int = 20
    pass_margin: float = 1.0

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:
        if not features.games or not self.members:
            return no_history(line)
        answers = [member.predict(features, line) for member in self.members]
        weights = [answer.confidence + 1.0 for answer in answers]
        total = sum(weights)
        predicted = sum(w * a.predicted_points for w, a in zip(weights, answers, strict=True))
        predicted /= total
        dispersion = math.sqrt(
            sum(
                w * (a.predicted_points - predicted) ** 2
                for w, a in zip(weights, answers, strict=True)
            )
            / total
        )
        base = decide(
            predicted,
            line,
            points_spread(features.games[: self.recent_games]),
            len(features.games),
            pass_margin=self.pass_margin,
            full_sample=self.full_sample,
        )
        agreement = 1.0 / (1.0 + dispersion / self.agreement_scale)
        if line is not None and base.recommendation in ("OVER", "UNDER"):
            side = 1.0 if base.recommendation == "OVER" else -1.0
            with_us = sum(
                w
                for w, a in zip(weights, answers, strict=True)
                if (a.predicted_points - float(line)) * side > 0
            )
            agreement *= with_us / total
        scale = (
            1.0
            - self.disagreement_penalty
            + (self.disagreement_penalty + self.agreement_bonus) * agreement
        )
        confidence = round(clamp(base.confidence * scale, 0.0, 100.0), 1)
        return SystemOutput(base.predicted_points, confidence, base.recommendation)
