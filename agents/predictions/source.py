"""The coordinator's input: a date's players and their prop lines, as PredictionRequests.

One query reads the date's ``upcoming_player_game_context`` joined with its ``prop_lines``;
:func:`build_requests` turns the rows into one request per player carrying every distinct line
(several books often post the same line; it is predicted once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from google.cloud import bigquery

from phaseflow.agents.predictions.bq import QueryRunner
from phaseflow.agents.predictions.tables import PROP_LINES, UPCOMING_CONTEXT, table_ref
from phaseflow.models.events import PredictionRequest
from phaseflow.models.fields import line_text


@dataclass(frozen=True)
class SourceRow:
    """A player on the date's slate with one of his lines (None: no line posted)."""

    player_lookup: str
    game_id: str
    points_line: Decimal | None


class SlateSource(Protocol):
    """Where the coordinator reads a date's slate from (BigQuery; a list in unit tests)."""

    async def read(self, game_date: date) -> list[SourceRow]: ...


def slate_sql(context_table: str, lines_table: str) -> str:
    return f"""
        SELECT c.player_lookup, c.game_id, l.points_line
        FROM `{context_table}` c
        LEFT JOIN `{lines_table}` l
          ON l.player_lookup = c.player_lookup AND l.game_date = @day
        WHERE c.game_date = @day
    """  # noqa: S608 -- table names are ours (settings), values are parameters


class BigQuerySlateSource:
    """Reads the slate with one parameterized query."""

    def __init__(self, runner: QueryRunner, *, project: str, dataset: str) -> None:
        self.runner = runner
        self._sql = slate_sql(
            table_ref(project, dataset, UPCOMING_CONTEXT), table_ref(project, dataset, PROP_LINES)
        )

    async def read(self, game_date: date) -> list[SourceRow]:
        rows = await self.runner.query(
            self._sql, [bigquery.ScalarQueryParameter("day", "DATE", game_date)]
        )
        return [
            SourceRow(
                player_lookup=row["player_lookup"],
                game_id=row["game_id"],
                points_line=None if row["points_line"] is None else Decimal(row["points_line"]),
            )
            for row in rows
        ]


def build_requests(
    rows: Iterable[SourceRow],
    *,
    game_date: date,
    batch_id: str,
    requested_at: datetime,
    correlation_id: str | None = None,
) -> list[PredictionRequest]:
    """One request per player, its distinct lines ascending; sorted by player (deterministic)."""
    games: dict[str, str] = {}
    lines: dict[str, set[Decimal]] = {}
    for row in rows:
        games.setdefault(row.player_lookup, row.game_id)
        found = lines.setdefault(row.player_lookup, set())
        if row.points_line is not None:
            # 25.5 and 25.50 are one line (and one key downstream): keep the canonical text.
            found.add(Decimal(line_text(row.points_line)))
    return [
        PredictionRequest(
            request_id=PredictionRequest.make_id(batch_id, game_date, player),
            batch_id=batch_id,
            game_date=game_date,
            game_id=games[player],
            player_lookup=player,
            line_values=sorted(lines[player]),
            requested_at=requested_at,
            correlation_id=correlation_id or batch_id,
        )
        for player in sorted(games)
    ]
