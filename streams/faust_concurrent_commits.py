"""Under ``exactly_once`` the transactions of a commit end side by side, not one after another.

faust-streaming 0.15 keeps one transactional producer per partition of the readiness group and
commits them in a loop: for each, ``send_offsets_to_transaction`` (AddOffsetsToTxn,
TxnOffsetCommit), ``commit_transaction`` (EndTxn) and ``begin_transaction``, every step a round
trip to the broker, partition after partition. With 4 partitions that is 12 round trips in a
row per commit, every ``kafka_commit_interval_seconds`` (0.1 s), and the readiness agent cannot
handle a batch while a commit runs (``phaseflow.streams.core.faust_table_writes``): on the
40,000-event benchmark the worker waited for commits about half of its time.

The producers are independent (one transactional id each, each with its own lock), so their
commits run concurrently here; a commit takes about as long as the slowest partition's. What a
transaction holds is unchanged: each still carries exactly its partition's offsets, table writes
and outputs. The first failure is raised as before (a fenced producer still crashes the app,
``TransactionManager.commit``), after every partition's commit has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_INSTALLED = "__phaseflow_concurrent_commits__"


async def _commit_one(
    producer: Any,
    transactional_id: str,
    offsets: Mapping[Any, int],
    group_id: str,
    *,
    start_new_transaction: bool,
) -> None:
    """Faust's loop body for one transactional producer."""
    async with producer._trn_locks[transactional_id]:
        transaction_producer = producer._transaction_producers.get(transactional_id)
        if transaction_producer is None:
            faust_aiokafka.logger.warning(
                f"Commit invoked for unknown transaction {transactional_id}"
            )
            return
        await transaction_producer.send_offsets_to_transaction(offsets, group_id)
        await transaction_producer.commit_transaction()
        if start_new_transaction:
            await transaction_producer.begin_transaction()


async def _commit_transactions(
    self: Any,
    tid_to_offset_map: Mapping[str, Mapping[Any, int]],
    group_id: str,
    start_new_transaction: bool = True,  # noqa: FBT001, FBT002 - Faust's own signature
) -> None:
    commits = [
        _commit_one(self, tid, offsets, group_id, start_new_transaction=start_new_transaction)
        for tid, offsets in tid_to_offset_map.items()
    ]
    if len(commits) == 1:
        await commits[0]
        return
    results = await asyncio.gather(*commits, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def commit_transactions_concurrently() -> None:
    """Install the concurrent commit on Faust's aiokafka producer (idempotent)."""
    producer: Any = faust_aiokafka.Producer
    if getattr(producer, _INSTALLED, False):
        return
    producer.commit_transactions = _commit_transactions
    setattr(producer, _INSTALLED, True)
