"""A commit ends its partitions' transactions side by side (streams/faust_concurrent_commits.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced
from faust.transport.drivers import aiokafka as faust_aiokafka

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.faust_concurrent_commits import (
    FAUST_COMMIT,
    commit_transactions_concurrently,
)

GROUP = "app"


class TransactionProducer:
    """One partition's transactional producer; logs its calls in the shared ``calls``."""

    def __init__(self, tid: str, calls: list[tuple[str, str]], *, fails: bool = False) -> None:
        self.tid = tid
        self.calls = calls
        self.fails = fails
        self.committed: dict[Any, int] = {}

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        assert group_id == GROUP
        self.calls.append(("offsets", self.tid))
        await asyncio.sleep(0)  # a request to the broker: others run meanwhile
        if self.fails:
            raise ProducerFenced
        self.committed = dict(offsets)

    async def commit_transaction(self) -> None:
        self.calls.append(("commit", self.tid))
        await asyncio.sleep(0)

    async def begin_transaction(self) -> None:
        self.calls.append(("begin", self.tid))


class FaustProducer:
    """The attributes of Faust's aiokafka ``Producer`` that ``commit_transactions`` uses."""

    def __init__(self, *producers: TransactionProducer) -> None:
        self._transaction_producers = {p.tid: p for p in producers}
        self._trn_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def offsets_of(*tids: str) -> dict[str, dict[str, int]]:
    return {tid: {f"tp-{tid}": 10} for tid in tids}


async def test_partitions_commit_side_by_side_not_in_turn() -> None:
    calls: list[tuple[str, str]] = []
    producers = [TransactionProducer(f"app-1-{n}", calls) for n in range(3)]
    await commit_transactions_concurrently(
        FaustProducer(*producers), offsets_of(*(p.tid for p in producers)), GROUP
    )
    # Every partition's offsets went out before any partition's EndTxn: none waited for another
    # (in turn, as faust-streaming does it, partition 0 would commit before partition 1 sends).
    first_commit = calls.index(next(c for c in calls if c[0] == "commit"))
    assert {tid for step, tid in calls[:first_commit] if step == "offsets"} == {
        p.tid for p in producers
    }
    assert [p.committed for p in producers] == [{f"tp-{p.tid}": 10} for p in producers]
    assert sorted(tid for step, tid in calls if step == "begin") == [p.tid for p in producers]


async def test_faust_commits_in_turn() -> None:
    # What the patch replaces; if faust-streaming starts committing side by side, drop the patch.
    calls: list[tuple[str, str]] = []
    producers = [TransactionProducer(f"app-1-{n}", calls) for n in range(2)]
    await FAUST_COMMIT(FaustProducer(*producers), offsets_of(*(p.tid for p in producers)), GROUP)
    assert [step for step, _ in calls] == ["offsets", "commit", "begin"] * 2


async def test_a_failing_partition_fails_the_commit_after_the_others_finished() -> None:
    calls: list[tuple[str, str]] = []
    fenced = TransactionProducer("app-1-0", calls, fails=True)
    healthy = TransactionProducer("app-1-1", calls)
    with pytest.raises(ProducerFenced):
        await commit_transactions_concurrently(
            FaustProducer(fenced, healthy), offsets_of(fenced.tid, healthy.tid), GROUP
        )
    # The healthy partition's commit ran to its end (begin of the next transaction included):
    # no producer is left mid-commit behind the error.
    assert ("begin", healthy.tid) in calls
    assert ("commit", fenced.tid) not in calls


async def test_an_unknown_transaction_is_skipped() -> None:
    calls: list[tuple[str, str]] = []
    known = TransactionProducer("app-1-0", calls)
    await commit_transactions_concurrently(
        FaustProducer(known), offsets_of(known.tid, "app-1-9"), GROUP
    )
    assert ("commit", known.tid) in calls


def test_building_the_app_installs_it(tmp_path: Path) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path))
    assert faust_aiokafka.Producer.commit_transactions is commit_transactions_concurrently
