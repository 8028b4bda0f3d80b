"""What a prediction system sees of a player: recent games and the upcoming game's context."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class GameLog:
    """One past game of a player (a row of ``player_game_summary``)."""

    game_date: date
    points: float
    minutes: float
    opponent: str | None
    is_home: bool | None


@dataclass(frozen=True)
class PlayerHistory:
    """A player's last games before ``before``, newest first."""

    player_lookup: str
    before: date
    games: tuple[GameLog, ...]


@dataclass(frozen=True)
class GameContext:
    """The upcoming game of a player (a row of ``upcoming_player_game_context``)."""

    player_lookup: str
    game_id: str
    team: str | None
    opponent: str | None
    is_home: bool | None


@dataclass(frozen=True)
class PlayerFeatures:
    """Everything a :class:`~phaseflow.agents.predictions.systems.PredictionSystem` predicts
    from."""

    player_lookup: str
    game_date: date
    games: tuple[GameLog, ...]  # newest first
    opponent: str | None = None
    is_home: bool | None = None

    @classmethod
    def build(
        cls,
        history: PlayerHistory | None,
        context: GameContext | None,
        game_date: date,
        player: str,
    ) -> PlayerFeatures:
        return cls(
            player_lookup=player,
            game_date=game_date,
            games=history.games if history is not None else (),
            opponent=context.opponent if context is not None else None,
            is_home=context.is_home if context is not None else None,
        )
