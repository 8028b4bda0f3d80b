"""Fakes for the prediction path's unit tests: a publisher, a query runner, a slate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from phaseflow.agents.predictions.bq import QueryError, QueryRunner
from phaseflow.agents.predictions.source import SourceRow
from phaseflow.streams.bigquery_clients import RetryPolicy
from phaseflow.streams.topics import TopicName

T0 = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
DAY = date(2026, 1, 15)
_GAME_FIELDS: Final = ("game_date", "points", "minutes", "opponent", "is_home")


class ListPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[TopicName, str, bytes]] = []

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def on(self, topic: TopicName) -> list[tuple[str, bytes]]:
        return [(key, value) for t, key, value in self.sent if t == topic]


class FakeRunner(QueryRunner):
    """Answers history and context queries from in-memory rows; counts them."""

    def __init__(self, history: list[dict[str, Any]], context: list[dict[str, Any]]) -> None:
        super().__init__(
            lambda: None,  # type: ignore[arg-type,return-value]
            timeout_seconds=1.0,
            policy=RetryPolicy(deadline_seconds=1.0),
        )
        self.history = history
        self.context = context
        self.calls: list[str] = []
        self.fail = False

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.stats.queries += 1
        values = {p.name: getattr(p, "values", None) or getattr(p, "value", None) for p in params}
        if self.fail:
            raise QueryError("emulator down")
        if "player_game_summary" in sql:
            self.calls.append("history")
            players = set(values["players"])
            rows = [
                r
                for r in self.history
                if r["player_lookup"] in players and r["game_date"] < values["before"]
            ]
            rows.sort(key=lambda r: (r["player_lookup"], r["game_date"]), reverse=True)
            # The shape of history_sql's answer: one row per player, the last games as JSON.
            games: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                kept = games.setdefault(row["player_lookup"], [])
                if len(kept) < values["games"]:
                    kept.append({name: row.get(name) for name in _GAME_FIELDS})
            return [
                {"player_lookup": player, "games": orjson.dumps(logs).decode()}
                for player, logs in games.items()
            ]
        self.calls.append("context")
        return [r for r in self.context if r["game_date"] == values["day"]]


class FakeSlate:
    def __init__(self, rows: list[SourceRow]) -> None:
        self.rows = rows
        self.reads = 0
        self.fail = False

    async def read(self, game_date: date) -> list[SourceRow]:  # noqa: ARG002
        self.reads += 1
        if self.fail:
            raise QueryError("emulator down")
        return list(self.rows)


def slate(players: int, lines: Sequence[str] = ("20.5", "21.5")) -> list[SourceRow]:
    rows = []
    for i in range(players):
        for line in lines:
            rows.append(SourceRow(f"player{i:03d}", f"G{i % 5}", Decimal(line)))
    return rows
