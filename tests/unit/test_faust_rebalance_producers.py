"""A rebalance stops the transactional producers of partitions that became standbys
(streams/faust_rebalance_producers.py).

The shape seen in the two-workers kill test: worker B starts alone (every partition, producers
``app-1-0`` ... ``app-1-3``); A joins and takes partitions 0 and 1, which become B's standbys.
Faust kept B's producers for them; A's new producers for the same ids fenced them; when A died
and B got 0 and 1 back, B reused the fenced producers and exited on ``ProducerFenced``.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types import TP

from phaseflow.streams.faust_rebalance_producers import (
    FAUST_ON_REBALANCE,
    on_rebalance_stopping_lost_producers,
)

APP_ID = "app"
TOPIC = "completions"


class TxnState:
    def __init__(self) -> None:
        self.in_transaction = False

    def is_in_transaction(self) -> bool:
        return self.in_transaction


class TransactionProducer:
    def __init__(self) -> None:
        self._txn_manager = TxnState()
        self.stopped = False


class FaustProducer:
    """The parts of Faust's aiokafka ``Producer`` a rebalance uses."""

    def __init__(self) -> None:
        self._transaction_producers: dict[str, TransactionProducer] = {}
        self.began: list[str] = []

    async def stop_transaction(self, transactional_id: str) -> None:
        producer = self._transaction_producers.pop(transactional_id, None)
        if producer is not None:
            producer.stopped = True

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        producer = self._transaction_producers.setdefault(transactional_id, TransactionProducer())
        self.began.append(transactional_id)
        producer._txn_manager.in_transaction = True


class Assignor:
    def __init__(self) -> None:
        self.standbys: set[TP] = set()

    def group_for_topic(self, topic: str) -> int:
        del topic
        return 1

    def is_standby(self, tp: TP) -> bool:
        return tp in self.standbys


def manager(producer: FaustProducer, assignor: Assignor) -> Any:
    """A TransactionManager's state with Faust's own helpers bound to it."""
    real = faust_consumer.TransactionManager
    fake = SimpleNamespace(
        producer=producer,
        app=SimpleNamespace(assignor=assignor, conf=SimpleNamespace(id=APP_ID)),
        log=logging.getLogger("faust-transactions"),
        transactional_id_format=real.transactional_id_format,
    )
    for name in ("_tps_to_transactional_ids", "_tps_to_active_tpgs"):
        setattr(fake, name, getattr(real, name).__get__(fake))
    for name in ("_stop_transactions", "_start_transactions"):
        setattr(fake, name, getattr(real, name).__get__(fake))
    return fake


def tps(*partitions: int) -> set[TP]:
    return {TP(TOPIC, partition) for partition in partitions}


async def join_then_takeover(on_rebalance: Any) -> tuple[FaustProducer, dict[str, Any]]:
    """B alone, then A joins (0 and 1 become B's standbys); returns B's producer and the
    producer objects B held for 0 and 1 before A joined."""
    producer, assignor = FaustProducer(), Assignor()
    state = manager(producer, assignor)
    await on_rebalance(state, tps(0, 1, 2, 3), set(), tps(0, 1, 2, 3))
    before = dict(producer._transaction_producers)
    assignor.standbys = tps(0, 1)  # the assignor's view is the new assignment's
    await on_rebalance(state, tps(2, 3) | tps(0, 1), tps(0, 1), set())
    return producer, before


async def test_producers_of_partitions_that_became_standbys_are_stopped() -> None:
    producer, before = await join_then_takeover(on_rebalance_stopping_lost_producers)
    assert sorted(producer._transaction_producers) == ["app-1-2", "app-1-3"]
    assert before["app-1-0"].stopped
    assert before["app-1-1"].stopped
    assert not before["app-1-2"].stopped


async def test_faust_keeps_them_which_is_what_the_patch_is_for() -> None:
    # If faust-streaming starts stopping them, the patch can go.
    producer, before = await join_then_takeover(FAUST_ON_REBALANCE)
    assert sorted(producer._transaction_producers) == [f"app-1-{n}" for n in range(4)]
    assert not before["app-1-0"].stopped


async def test_a_partition_that_comes_back_gets_a_new_producer() -> None:
    producer, assignor = FaustProducer(), Assignor()
    state = manager(producer, assignor)
    await on_rebalance_stopping_lost_producers(state, tps(0, 1, 2, 3), set(), tps(0, 1, 2, 3))
    old = producer._transaction_producers["app-1-0"]
    assignor.standbys = tps(0, 1)
    await on_rebalance_stopping_lost_producers(state, tps(2, 3) | tps(0, 1), tps(0, 1), set())
    assignor.standbys = set()  # the other worker died: B gets 0 and 1 back
    await on_rebalance_stopping_lost_producers(state, tps(0, 1, 2, 3), set(), tps(0, 1))
    new = producer._transaction_producers["app-1-0"]
    assert new is not old
    assert new._txn_manager.is_in_transaction()


async def test_producers_kept_in_their_transaction_are_not_asked_to_begin_again() -> None:
    producer, assignor = FaustProducer(), Assignor()
    state = manager(producer, assignor)
    await on_rebalance_stopping_lost_producers(state, tps(0, 1), set(), tps(0, 1))
    await on_rebalance_stopping_lost_producers(state, tps(0, 1, 2), set(), tps(2))
    # Faust begins every kept producer's transaction again: an "Invalid state transition"
    # warning each, on every rebalance.
    assert producer.began == ["app-1-0", "app-1-1", "app-1-2"]
