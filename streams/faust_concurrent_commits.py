"""Under ``exactly_once`` a commit ends the transactions of its partitions at once, not in turn.

faust-streaming 0.15 keeps one transactional producer per source partition and commits a
consumer commit's partitions one after the other (``Producer.commit_transactions``): for each,
AddOffsetsToTxn and EndTxn to the transaction coordinator and TxnOffsetCommit to the group
coordinator, each waiting for the one before. The commit holds the worker's record lock
(``streams/core/faust_table_writes.py``), so no record is handled until the last partition's
transaction has ended; a commit of four readiness partitions took four times one.

That is what made the first trigger after a broker restart slow (2026-12-07, the ten-restart
endurance test): the commit the commit timer started while the broker was away waited for the
broker, and when it came back each partition's transaction in turn waited for the broker's
group and transaction coordinators, still loading, to answer again. The next record was
handled only after the last of them; its trigger came 0.6-3.6 s after the broker answered.

The partitions' transactions are independent: each producer commits only its own partition's
offsets and the outputs sent for that partition's records, so committing them side by side
can leave no state that committing them in turn could not (there, too, a crash between two
commits leaves some partitions committed and the others not). Each producer's own lock is
held as before. Every partition's commit is awaited, then the first error is raised: the
commit fails as before, and no producer is left mid-commit behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

_INSTALLED = "__phaseflow_concurrent_commits__"
#: faust-streaming's own, committing in turn (kept for the test that it still does).
FAUST_COMMIT: Any = faust_aiokafka.Producer.commit_transactions


async def _commit_one(
    producer: Any,
    transactional_id: str,
    offsets: Mapping[Any, int],
    group_id: str,
    start_new_transaction: bool,  # noqa: FBT001 - Faust's own positional signature
) -> None:
    async with producer._trn_locks[transactional_id]:
        transaction_producer = producer._transaction_producers.get(transactional_id)
        if transaction_producer is None:
            log.warning("commit invoked for unknown transaction %s", transactional_id)
            return
        await transaction_producer.send_offsets_to_transaction(offsets, group_id)
        await transaction_producer.commit_transaction()
        if start_new_transaction:
            await transaction_producer.begin_transaction()


async def commit_transactions_concurrently(
    self: Any,
    tid_to_offset_map: Mapping[str, Mapping[Any, int]],
    group_id: str,
    start_new_transaction: bool = True,  # noqa: FBT001, FBT002 - Faust's signature
) -> None:
    """Faust's ``Producer.commit_transactions``, each transactional id's commit side by side."""
    outcomes = await asyncio.gather(
        *(
            _commit_one(self, transactional_id, offsets, group_id, start_new_transaction)
            for transactional_id, offsets in tid_to_offset_map.items()
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def commit_partitions_concurrently() -> None:
    """Make Faust's transactional commits end their partitions' transactions at once
    (idempotent)."""
    producer_class: Any = faust_aiokafka.Producer
    if getattr(producer_class, _INSTALLED, False):
        return
    producer_class.commit_transactions = commit_transactions_concurrently
    setattr(producer_class, _INSTALLED, True)
