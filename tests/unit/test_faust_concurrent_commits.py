"""The transactions of one exactly_once commit end side by side
(streams/faust_concurrent_commits.py): each transactional producer still gets exactly its own
offsets, commits and begins its next transaction; a failure is raised once every one ended."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from phaseflow.streams.faust_concurrent_commits import commit_transactions_concurrently


class FakeTransactionProducer:
    """Records its calls; each step yields to the loop like a broker round trip."""

    def __init__(self, name: str, log: list[tuple[str, str]], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.offsets: list[tuple[dict[Any, int], str]] = []

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        self.log.append((self.name, "offsets"))
        await asyncio.sleep(0)
        self.offsets.append((offsets, group_id))

    async def commit_transaction(self) -> None:
        self.log.append((self.name, "commit"))
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError(f"{self.name} fenced")

    async def begin_transaction(self) -> None:
        self.log.append((self.name, "begin"))


def _producer(transactions: dict[str, FakeTransactionProducer]) -> Any:
    commit_transactions_concurrently()
    producer = object.__new__(faust_aiokafka.Producer)
    producer._transaction_producers = dict(transactions)
    producer._trn_locks = defaultdict(asyncio.Lock)
    return producer


def test_every_partition_commits_its_own_offsets_side_by_side() -> None:
    log: list[tuple[str, str]] = []
    transactions = {name: FakeTransactionProducer(name, log) for name in ("app-1-0", "app-1-1")}
    producer = _producer(transactions)
    offsets = {"app-1-0": {"tp0": 10}, "app-1-1": {"tp1": 20}}

    asyncio.run(producer.commit_transactions(offsets, "app"))

    assert transactions["app-1-0"].offsets == [({"tp0": 10}, "app")]
    assert transactions["app-1-1"].offsets == [({"tp1": 20}, "app")]
    for name in transactions:
        assert [step for who, step in log if who == name] == ["offsets", "commit", "begin"]
    # Side by side: the second producer starts before the first one has committed.
    assert log.index(("app-1-1", "offsets")) < log.index(("app-1-0", "commit"))


def test_no_new_transaction_when_asked_not_to() -> None:
    log: list[tuple[str, str]] = []
    transactions = {name: FakeTransactionProducer(name, log) for name in ("a-0", "a-1")}
    producer = _producer(transactions)

    asyncio.run(
        producer.commit_transactions(
            {"a-0": {"tp0": 1}, "a-1": {"tp1": 1}}, "app", start_new_transaction=False
        )
    )

    assert ("a-0", "begin") not in log
    assert ("a-1", "begin") not in log


def test_a_failed_commit_is_raised_after_the_others_ended() -> None:
    log: list[tuple[str, str]] = []
    transactions = {
        "a-0": FakeTransactionProducer("a-0", log, fail=True),
        "a-1": FakeTransactionProducer("a-1", log),
    }
    producer = _producer(transactions)

    with pytest.raises(RuntimeError, match="a-0 fenced"):
        asyncio.run(producer.commit_transactions({"a-0": {"tp0": 1}, "a-1": {"tp1": 1}}, "app"))

    assert [step for who, step in log if who == "a-1"] == ["offsets", "commit", "begin"]


def test_an_unknown_transaction_is_skipped() -> None:
    log: list[tuple[str, str]] = []
    producer = _producer({"a-0": FakeTransactionProducer("a-0", log)})

    asyncio.run(producer.commit_transactions({"a-0": {"tp0": 1}, "gone-1": {"tp1": 1}}, "app"))

    assert log == [("a-0", "offsets"), ("a-0", "commit"), ("a-0", "begin")]
