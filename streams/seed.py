"""Synthetic source data for the prediction path: ``phaseflow seed --date D [--players N]``.

Writes one game date's slate into the settings' BigQuery dataset: ``upcoming_player_game_context``
(who plays whom, home or away), ``prop_lines`` (~5 books per player, lines in .5 steps, NUMERIC)
and ``player_game_summary`` (60+ past games per player). Deterministic: the same date, player count
and seed always give the same rows, so tests, the demo and the benchmarks agree.

Rows go in with ``insert_rows_json`` in chunks of at most 500 (the emulator has no JSON load
jobs); the date's earlier seed is deleted first, so seeding twice does not duplicate rows.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any, Final

from google.api_core.retry import Retry
from google.cloud import bigquery

from phaseflow.agents.predictions.tables import GAME_SUMMARY, PROP_LINES, SCHEMAS, UPCOMING_CONTEXT
from phaseflow.streams.core.bigquery_clients import (
    RetryPolicy,
    ensure_dataset,
    make_bigquery_client,
)
from phaseflow.streams.core.settings import Settings

MAX_ROWS_PER_INSERT: Final = 500
DEFAULT_PLAYERS: Final = 450
DEFAULT_HISTORY_GAMES: Final = 64
BOOKMAKERS: Final = ("draftkings", "fanduel", "betmgm", "caesars", "pointsbet")
TEAMS: Final = (
    "ATL", "BOS", "BKN", "CHA", "CHI", "CLE", "DAL", "DEN", "DET", "GSW",
    "HOU", "IND", "LAC", "LAL", "MEM", "MIA", "MIL", "MIN", "NOP", "NYK",
    "OKC", "ORL", "PHI", "PHX", "POR", "SAC", "SAS", "TOR", "UTA", "WAS",
)  # fmt: skip
_FIRST: Final = (
    "james", "anthony", "kevin", "stephen", "luka", "jayson", "devin", "joel", "nikola", "giannis",
    "damian", "jimmy", "kawhi", "paul", "jalen", "tyrese", "donovan", "trae", "zion", "ja",
    "bam", "de'aaron", "brandon", "lamelo", "scottie", "evan", "cade", "franz", "paolo", "victor",
    "chet", "alperen", "desmond", "mikal", "jaren", "domantas", "darius", "fred", "kyle", "derrick",
)  # fmt: skip
_LAST: Final = (
    "harden", "edwards", "durant", "curry", "doncic", "tatum", "booker", "embiid", "jokic",
    "antetokounmpo", "lillard", "butler", "leonard", "george", "brunson", "haliburton",
    "mitchell", "young", "williamson", "morant", "adebayo", "fox", "ingram", "ball", "barnes",
    "mobley", "cunningham", "wagner", "banchero", "wembanyama", "holmgren", "sengun", "bane",
    "bridges", "jackson", "sabonis", "garland", "vanvleet", "lowry", "white", "green", "smith",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticPlayer:
    """A made-up player: who, which team, and how he scores."""

    player_lookup: str
    player_name: str
    team: str
    points_mean: float
    minutes_mean: float
    home_bonus: float  # relative, e.g. +0.04 scores 4 % more at home
    volatility: float  # standard deviation relative to the mean


@dataclass(frozen=True)
class SeedData:
    """Every row of one seeded date, ready for ``insert_rows_json``."""

    game_date: date
    players: tuple[SyntheticPlayer, ...]
    context: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class SeedSummary:
    """What ``seed`` wrote."""

    game_date: date
    players: int
    games: int
    line_rows: int
    history_rows: int
    insert_requests: int
    seconds: float


def _lookup(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _players(rng: random.Random, count: int) -> tuple[SyntheticPlayer, ...]:
    players: list[SyntheticPlayer] = []
    seen: set[str] = set()
    for index in range(count):
        team = TEAMS[index % len(TEAMS)]
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        lookup = _lookup(name)
        if lookup in seen:
            name = f"{name} {index}"
            lookup = _lookup(name)
        seen.add(lookup)
        # Scoring is skewed: a few stars, many role players.
        points = max(2.0, min(34.0, rng.lognormvariate(math.log(11.0), 0.55)))
        minutes = max(10.0, min(38.0, 12.0 + points * 0.85 + rng.gauss(0, 3)))
        players.append(
            SyntheticPlayer(
                player_lookup=lookup,
                player_name=name.title(),
                team=team,
                points_mean=round(points, 2),
                minutes_mean=round(minutes, 1),
                home_bonus=rng.uniform(-0.02, 0.08),
                volatility=rng.uniform(0.2, 0.4),
            )
        )
    return tuple(players)


def _pairings(rng: random.Random, teams: Sequence[str]) -> list[tuple[str, str]]:
    """(away, home) pairs: every team plays once (30 teams, 15 games)."""
    shuffled = list(teams)
    rng.shuffle(shuffled)
    return [(shuffled[i], shuffled[i + 1]) for i in range(0, len(shuffled) - 1, 2)]


def _game_id(day: date, away: str, home: str) -> str:
    return f"{day:%Y%m%d}_{away}_{home}"


def generate(
    game_date: date,
    *,
    players: int = DEFAULT_PLAYERS,
    history_games: int = DEFAULT_HISTORY_GAMES,
    seed: int = 0,
) -> SeedData:
    """The rows of one date's slate, deterministic in (date, players, history_games, seed)."""
    # Not for security: a reproducible stream of synthetic data.
    rng = random.Random(f"{seed}:{game_date.isoformat()}:{players}:{history_games}")  # noqa: S311
    roster = _players(rng, players)
    teams = sorted({p.team for p in roster})
    # Opponents defend differently: a factor on what a scorer gets against them.
    defense = {team: rng.uniform(0.88, 1.12) for team in TEAMS}
    by_team: dict[str, list[SyntheticPlayer]] = {}
    for player in roster:
        by_team.setdefault(player.team, []).append(player)

    history: list[dict[str, Any]] = []
    form = {p.player_lookup: 1.0 for p in roster}
    # Oldest first, so "form" (a slow random walk) carries forward in time.
    for slot in range(history_games, 0, -1):
        day = game_date - timedelta(days=2 * slot)
        for away, home in _pairings(rng, teams):
            for team, opponent, is_home in ((away, home, False), (home, away, True)):
                for player in by_team[team]:
                    form[player.player_lookup] = min(
                        1.3, max(0.7, form[player.player_lookup] + rng.gauss(0, 0.03))
                    )
                    factor = defense[opponent] * form[player.player_lookup]
                    if is_home:
                        factor *= 1 + player.home_bonus
                    minutes = max(0.0, rng.gauss(player.minutes_mean, 4.0))
                    mean = player.points_mean * factor * (minutes / player.minutes_mean)
                    points = max(0, round(rng.gauss(mean, mean * player.volatility)))
                    fga = max(0, round(points / 1.15 + rng.gauss(0, 2)))
                    history.append(
                        {
                            "player_lookup": player.player_lookup,
                            "game_date": day.isoformat(),
                            "game_id": _game_id(day, away, home),
                            "team": team,
                            "opponent": opponent,
                            "is_home": is_home,
                            "minutes": round(minutes, 1),
                            "points": points,
                            "fg_attempts": fga,
                            "three_pt_attempts": max(0, round(fga * rng.uniform(0.2, 0.5))),
                            "ft_attempts": max(0, round(points * rng.uniform(0.1, 0.3))),
                        }
                    )

    context: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    captured = datetime.combine(game_date, dtime(15, 0), tzinfo=UTC)
    for away, home in _pairings(rng, teams):
        game_id = _game_id(game_date, away, home)
        for team, opponent, is_home in ((away, home, False), (home, away, True)):
            for player in by_team[team]:
                context.append(
                    {
                        "game_date": game_date.isoformat(),
                        "game_id": game_id,
                        "player_lookup": player.player_lookup,
                        "player_name": player.player_name,
                        "team": team,
                        "opponent": opponent,
                        "is_home": is_home,
                        "days_rest": rng.choice((1, 1, 2, 2, 3)),
                    }
                )
                if rng.random() < 0.03:
                    continue  # no line posted yet for this player (the workers answer NO_LINE)
                consensus = player.points_mean * form[player.player_lookup]
                for book in BOOKMAKERS:
                    # Books disagree by a point or so; every line is a half point (NUMERIC text).
                    line = max(0.5, math.floor(consensus + rng.gauss(0, 0.8)) + 0.5)
                    lines.append(
                        {
                            "game_date": game_date.isoformat(),
                            "game_id": game_id,
                            "player_lookup": player.player_lookup,
                            "bookmaker": book,
                            "points_line": f"{line:.1f}",
                            "over_price": rng.choice((-125, -120, -115, -110, -105, 100)),
                            "under_price": rng.choice((-125, -120, -115, -110, -105, 100)),
                            "captured_at": captured.isoformat(),
                        }
                    )
    return SeedData(game_date, roster, context, lines, history)


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def ensure_tables(client: bigquery.Client, dataset: str, *, timeout: float, retry: Retry) -> None:
    """Create the three source tables (day-partitioned on ``game_date``) unless they exist."""
    for name, schema in SCHEMAS.items():
        table = bigquery.Table(f"{client.project}.{dataset}.{name}", schema=schema)
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field="game_date"
        )
        client.create_table(table, exists_ok=True, timeout=timeout, retry=retry)


def _delete_previous(
    client: bigquery.Client, dataset: str, data: SeedData, *, timeout: float, retry: Retry
) -> None:
    first = min((row["game_date"] for row in data.history), default=data.game_date.isoformat())
    statements = [
        (UPCOMING_CONTEXT, "game_date = @day"),
        (PROP_LINES, "game_date = @day"),
        (GAME_SUMMARY, "game_date >= @first AND game_date < @day"),
    ]
    params = [
        bigquery.ScalarQueryParameter("day", "DATE", data.game_date),
        bigquery.ScalarQueryParameter("first", "DATE", date.fromisoformat(first)),
    ]
    for table, where in statements:
        sql = f"DELETE FROM `{client.project}.{dataset}.{table}` WHERE {where}"  # noqa: S608
        config = bigquery.QueryJobConfig(
            query_parameters=[p for p in params if f"@{p.name}" in sql]
        )
        client.query_and_wait(
            sql,
            job_config=config,
            api_timeout=timeout,
            wait_timeout=timeout,
            retry=retry,
            job_retry=None,  # type: ignore[arg-type] # the library accepts None
        )


def insert_rows(
    client: bigquery.Client,
    table_id: str,
    rows: Sequence[dict[str, Any]],
    *,
    timeout: float,
    retry: Retry,
) -> int:
    """``insert_rows_json`` in chunks of at most 500 rows; returns the number of requests."""
    requests_made = 0
    for chunk in _chunks(rows, MAX_ROWS_PER_INSERT):
        errors = client.insert_rows_json(table_id, chunk, timeout=timeout, retry=retry)
        requests_made += 1
        if errors:
            raise RuntimeError(f"insert into {table_id} failed: {errors[:3]}")
    return requests_made


def seed(
    client: bigquery.Client,
    dataset: str,
    game_date: date,
    *,
    players: int = DEFAULT_PLAYERS,
    history_games: int = DEFAULT_HISTORY_GAMES,
    seed_value: int = 0,
    timeout: float = 30.0,
    retry: Retry | None = None,
) -> SeedSummary:
    """Write one date's synthetic slate into ``dataset`` (created if missing); idempotent.
    ``retry``: the settings' policy (:meth:`RetryPolicy.sync`); unset, one bounded by
    ``timeout`` (tests and benchmarks)."""
    retry = retry or RetryPolicy(deadline_seconds=timeout).sync()
    started = time.monotonic()
    data = generate(game_date, players=players, history_games=history_games, seed=seed_value)
    ensure_dataset(client, dataset, timeout=timeout, retry=retry)
    ensure_tables(client, dataset, timeout=timeout, retry=retry)
    _delete_previous(client, dataset, data, timeout=timeout, retry=retry)
    requests_made = 0
    for table, rows in (
        (UPCOMING_CONTEXT, data.context),
        (PROP_LINES, data.lines),
        (GAME_SUMMARY, data.history),
    ):
        table_id = f"{client.project}.{dataset}.{table}"
        requests_made += insert_rows(client, table_id, rows, timeout=timeout, retry=retry)
    return SeedSummary(
        game_date=game_date,
        players=len(data.players),
        games=len({row["game_id"] for row in data.context}),
        line_rows=len(data.lines),
        history_rows=len(data.history),
        insert_requests=requests_made,
        seconds=time.monotonic() - started,
    )


def seed_from_cli(settings: Settings, *, game_date: str, players: int) -> int:
    """``phaseflow seed``: seed the settings' dataset and print what was written."""
    day = date.fromisoformat(game_date)
    client = make_bigquery_client(settings)
    try:
        summary = seed(
            client,
            settings.bigquery_dataset,
            day,
            players=players,
            timeout=settings.bigquery_timeout_seconds,
            retry=RetryPolicy.from_settings(settings).sync(),
        )
    finally:
        client.close()  # type: ignore[no-untyped-call]
    print(  # noqa: T201
        f"seeded {summary.game_date} into {settings.bigquery_project}.{settings.bigquery_dataset}: "
        f"{summary.players} players in {summary.games} games, {summary.line_rows} prop lines, "
        f"{summary.history_rows} past games ({summary.insert_requests} insert requests, "
        f"{summary.seconds:.1f} s)"
    )
    return 0
