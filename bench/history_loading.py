"""Benchmark: history for 450 players, one query per player vs batched (HistoryLoader).

Runs with no arguments: starts an ephemeral BigQuery emulator (unless
``PHASEFLOW_BIGQUERY_ENDPOINT`` is set), seeds a 450-player slate (``phaseflow.streams.seed``), then
loads each player's last 60 games (a) with one parameterized query per player, sequentially, as a
naive worker would, and (b) with ``HistoryLoader`` (``IN UNNEST(@players)`` + ``ROW_NUMBER``, one
query per batch of ``prediction_batch_size`` players), checks both return the same games, and
(c) re-requests everything within the cache TTL. The machine is shared and its load swings, so
(a) runs in ``ROUNDS`` slices with a cold (b) after each: both see the same load, and (b)'s time
is the mean of its rounds. No broker is needed. Prints a table; the last line is one JSON object
with the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from datetime import date
from typing import Any, Final

from google.cloud import bigquery

from phaseflow.agents.predictions.bq import QueryRunner
from phaseflow.agents.predictions.features import GameLog
from phaseflow.agents.predictions.history import HistoryLoader
from phaseflow.agents.predictions.tables import GAME_SUMMARY, table_ref
from phaseflow.streams.core.bigquery_clients import RetryPolicy, make_bigquery_client
from phaseflow.streams.core.clock import SystemClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator
from phaseflow.streams.seed import seed

DAY: Final = date(2026, 1, 15)
PLAYERS: Final = 450
GAMES: Final = 60
PROJECT: Final = "bench-history"
TARGET_QUERY_RATIO: Final = 50.0
TARGET_TIME_RATIO: Final = 20.0
ROUNDS: Final = 5


def per_player_sql(table: str) -> str:
    return f"""
        SELECT player_lookup, game_date, points, minutes, opponent, is_home
        FROM `{table}`
        WHERE player_lookup = @player AND game_date < @before
        ORDER BY game_date DESC
        LIMIT @games
    """  # noqa: S608 -- our own table name


async def _per_player(runner: QueryRunner, table: str, players: list[str]) -> dict[str, list[date]]:
    sql = per_player_sql(table)
    found: dict[str, list[date]] = {}
    for player in players:
        rows = await runner.query(
            sql,
            [
                bigquery.ScalarQueryParameter("player", "STRING", player),
                bigquery.ScalarQueryParameter("before", "DATE", DAY),
                bigquery.ScalarQueryParameter("games", "INT64", GAMES),
            ],
        )
        found[player] = [row["game_date"] for row in rows]
    return found


def _dates(games: tuple[GameLog, ...]) -> list[date]:
    return [g.game_date for g in games]


async def _run(settings: Settings, batch_size: int) -> dict[str, Any]:
    client = make_bigquery_client(settings)
    try:
        dataset = f"bench_{uuid.uuid4().hex[:8]}"
        seeded = await asyncio.to_thread(seed, client, dataset, DAY, players=PLAYERS)
        players = sorted(
            row["player_lookup"]
            for row in await QueryRunner(
                client, timeout_seconds=30, policy=RetryPolicy(deadline_seconds=30)
            ).query(
                f"SELECT DISTINCT player_lookup FROM `{table_ref(client.project, dataset, GAME_SUMMARY)}`"  # noqa: S608, E501
            )
        )
        table = table_ref(client.project, dataset, GAME_SUMMARY)
        naive_runner = QueryRunner(
            client, timeout_seconds=30, policy=RetryPolicy(deadline_seconds=30)
        )
        batched_runner = QueryRunner(
            client, timeout_seconds=30, policy=RetryPolicy(deadline_seconds=30)
        )
        naive: dict[str, list[date]] = {}
        naive_seconds = 0.0
        batched_times: list[float] = []
        slice_size = -(-len(players) // ROUNDS)
        for start in range(0, len(players), slice_size):
            started = time.perf_counter()
            naive.update(
                await _per_player(naive_runner, table, players[start : start + slice_size])
            )
            naive_seconds += time.perf_counter() - started
            loader = HistoryLoader(  # a new loader each round: its cache starts empty
                batched_runner,
                project=client.project,
                dataset=dataset,
                clock=SystemClock(),
                games=GAMES,
                max_players_per_query=batch_size,
            )
            started = time.perf_counter()
            batched = await loader.load(players, DAY)
            batched_times.append(time.perf_counter() - started)
        batched_seconds = sum(batched_times) / len(batched_times)
        batched_queries = loader.stats.history_queries  # of one load
        before_cached = batched_runner.stats.queries
        started = time.perf_counter()
        await loader.load(players, DAY)
        cached_seconds = time.perf_counter() - started
        cached_queries = batched_runner.stats.queries - before_cached

        mismatches = sum(1 for p in players if naive[p] != _dates(batched[p].games))
        with contextlib.suppress(Exception):
            client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, timeout=30)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    query_ratio = naive_runner.stats.queries / max(batched_queries, 1)
    time_ratio = naive_seconds / max(batched_seconds, 1e-9)
    return {
        "players": len(players),
        "games_per_player": GAMES,
        "history_rows_seeded": seeded.history_rows,
        "batch_size": batch_size,
        "per_player_queries": naive_runner.stats.queries,
        "per_player_seconds": round(naive_seconds, 3),
        "batched_queries": batched_queries,
        "batched_seconds": round(batched_seconds, 3),
        "batched_rounds": len(batched_times),
        "batched_seconds_min_max": [round(min(batched_times), 3), round(max(batched_times), 3)],
        "cached_queries": cached_queries,
        "cached_seconds": round(cached_seconds, 4),
        "rows_per_player_query": round(naive_runner.stats.rows / max(len(players), 1), 1),
        "mismatched_players": mismatches,
        "query_ratio": round(query_ratio, 1),
        "time_ratio": round(time_ratio, 1),
        "query_ratio_target": TARGET_QUERY_RATIO,
        "time_ratio_target": TARGET_TIME_RATIO,
        "meets_targets": query_ratio >= TARGET_QUERY_RATIO
        and time_ratio >= TARGET_TIME_RATIO
        and mismatches == 0,
    }


def _table(figures: dict[str, Any]) -> str:
    rows = [
        ("per player (naive)", figures["per_player_queries"], figures["per_player_seconds"]),
        (
            f"batched ({figures['batch_size']}/query, mean)",
            figures["batched_queries"],
            figures["batched_seconds"],
        ),
        ("again, within TTL (cache)", figures["cached_queries"], figures["cached_seconds"]),
    ]
    lines = [
        (
            f"history of {figures['players']} players, last {figures['games_per_player']} "
            f"games ({figures['history_rows_seeded']} rows seeded)"
        ),
        f"{'method':<28}{'queries':>9}{'seconds':>10}",
    ]
    lines += [f"{name:<28}{queries:>9}{seconds:>10.3f}" for name, queries, seconds in rows]
    lines.append(
        f"ratio: {figures['query_ratio']}x fewer queries (target >= {TARGET_QUERY_RATIO:g}x), "
        f"{figures['time_ratio']}x less time (target >= {TARGET_TIME_RATIO:g}x); "
        f"players whose games differ: {figures['mismatched_players']}"
    )
    return "\n".join(lines)


def main() -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the figures."""
    batch_size = Settings().prediction_batch_size
    endpoint = os.environ.get("PHASEFLOW_BIGQUERY_ENDPOINT")
    if endpoint:
        settings = Settings()
        figures = asyncio.run(_run(settings, batch_size))
    else:
        with BigQueryEmulator(PROJECT) as emulator:
            settings = Settings(bigquery_endpoint=emulator.endpoint, bigquery_project=PROJECT)
            figures = asyncio.run(_run(settings, batch_size))
    print(_table(figures))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main()["meets_targets"] else 1)
