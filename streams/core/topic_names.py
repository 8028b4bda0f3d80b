"""The topic catalog's names, apart from their specs (phaseflow.streams.core.topics) so light
clients can name a topic without importing the admin machinery."""

from __future__ import annotations

from enum import StrEnum


class TopicName(StrEnum):
    """Catalog names; the full name is ``{settings.topic_prefix}.{name}``."""

    PHASE_COMPLETIONS = "phase-completions"
    PHASE_TRIGGERS = "phase-triggers"
    RERUN_REQUESTS = "rerun-requests"
    PREDICTION_REQUESTS = "prediction-requests"
    PREDICTIONS = "predictions"
    ALERTS = "alerts"
    DEAD_LETTERS = "dead-letters"
    AUDIT = "audit"
    READINESS_TICKS = "readiness-ticks"
    PREDICTION_PROGRESS = "prediction-progress"
    DEAD_LETTER_REPLAYS = "dead-letter-replays"
