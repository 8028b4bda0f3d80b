"""Request bodies of the mutating endpoints that are not events of the contract (those,
``PhaseCompletion``, live in phaseflow.models.events)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from phaseflow.models.fields import GameDate, Identifier, Phase, Text


class RerunBody(BaseModel):
    """``POST /reruns``: one processor, or every expected processor of the phase."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    game_date: GameDate
    phase: Phase
    processor_name: Identifier | None = None


class CoordinatorBody(BaseModel):
    """``POST /coordinator/start`` and ``/complete``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    game_date: GameDate
    batch_id: Text | None = None
