"""Batched history loading and its TTL cache (a fake runner counts the queries)."""

from __future__ import annotations

import math
from datetime import date, timedelta

from phaseflow.agents.predictions.history import HistoryLoader, TTLCache, history_sql
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.seed import generate
from tests.fixtures.prediction_fakes import DAY, T0, FakeRunner


def loader(clock: ManualClock, *, per_query: int = 100) -> tuple[HistoryLoader, FakeRunner]:
    data = generate(DAY, players=450, history_games=64)
    runner = FakeRunner(
        [{**row, "game_date": date.fromisoformat(row["game_date"])} for row in data.history],
        [{**row, "game_date": date.fromisoformat(row["game_date"])} for row in data.context],
    )
    players = [p.player_lookup for p in data.players]
    made = HistoryLoader(
        runner,
        project="p",
        dataset="d",
        clock=clock,
        games=60,
        ttl=timedelta(minutes=15),
        max_players_per_query=per_query,
    )
    made.players = players  # type: ignore[attr-defined]
    return made, runner


def test_ttl_cache_expires_by_the_clock() -> None:
    clock = ManualClock(T0)
    cache: TTLCache[str, int] = TTLCache(timedelta(seconds=10), clock)
    cache.put("a", 1)
    clock.advance(timedelta(seconds=9))
    assert cache.get("a") == 1
    clock.advance(timedelta(seconds=1))
    assert cache.get("a") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_ttl_cache_is_bounded() -> None:
    cache: TTLCache[int, int] = TTLCache(timedelta(hours=1), ManualClock(T0), max_entries=10)
    for i in range(25):
        cache.put(i, i)
    assert len(cache) <= 10
    assert cache.get(24) == 24


async def test_450_players_load_with_one_query_per_chunk_last_60_games_each() -> None:
    made, runner = loader(ManualClock(T0), per_query=100)
    players = made.players  # type: ignore[attr-defined]
    histories = await made.load(players, DAY)
    assert runner.calls == ["history"] * math.ceil(450 / 100)
    assert len(histories) == 450
    sample = histories[players[0]]
    assert len(sample.games) == 60
    dates = [g.game_date for g in sample.games]
    assert dates == sorted(dates, reverse=True)
    assert all(d < DAY for d in dates)


async def test_cached_players_cost_no_query_until_the_ttl_passes() -> None:
    clock = ManualClock(T0)
    made, runner = loader(clock)
    players = made.players[:50]  # type: ignore[attr-defined]
    await made.load(players, DAY)
    await made.load(players, DAY)
    await made.load(players[:10], DAY)
    assert runner.calls == ["history"]
    clock.advance(timedelta(minutes=15))
    await made.load(players, DAY)
    assert runner.calls == ["history", "history"]
    assert made.stats.history_queries == 2


async def test_context_is_one_query_per_date() -> None:
    made, runner = loader(ManualClock(T0))
    first = await made.context(DAY)
    await made.context(DAY)
    assert runner.calls == ["context"]
    assert len(first) == 450
    assert all(c.opponent and c.is_home is not None for c in first.values())


def test_history_sql_is_one_parameterized_window_query() -> None:
    sql = history_sql("p.d.player_game_summary")
    assert "IN UNNEST(@players)" in sql
    assert "ROW_NUMBER() OVER" in sql
    assert "PARTITION BY player_lookup" in sql
