"""A transactional producer's coordinator lookup survives a closed connection
(streams/aiokafka_txn_coordinator.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, TransactionalIdAuthorizationFailed
from aiokafka.producer.sender import Sender

from phaseflow.streams import aiokafka_txn_coordinator
from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings

TRANSACTION = 1  # aiokafka's CoordinationType.TRANSACTION


class Client:
    """Answers FindCoordinator with ``failures`` first, then node 7."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.lookups = 0
        self.metadata_updates = 0

    async def coordinator_lookup(self, _type: int, _key: str) -> int:
        self.lookups += 1
        if self.failures:
            raise self.failures.pop(0)
        return 7

    async def ready(self, _node: int, **_: Any) -> bool:
        return True

    async def force_metadata_update(self) -> bool:
        self.metadata_updates += 1
        return True


class FakeSender:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._coordinators: dict[int, int] = {}
        self._retry_backoff = 0.0
        self._txn_manager = type("TxnManager", (), {"transactional_id": "app-0-1"})()


async def test_stock_aiokafka_gives_up_on_a_closed_connection() -> None:
    sender = FakeSender(Client(KafkaConnectionError("Connection at 127.0.0.1:9092 closed")))
    with pytest.raises(KafkaError, match="closed"):
        await aiokafka_txn_coordinator._ORIGINAL(sender, TRANSACTION, "app-0-1")


async def test_after_building_the_app_a_closed_connection_is_retried(tmp_path: Path) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path))
    client = Client(
        KafkaConnectionError("Connection at 127.0.0.1:9092 closed"),
        KafkaConnectionError("Connect call failed"),
    )
    assert await Sender._find_coordinator(FakeSender(client), TRANSACTION, "app-0-1") == 7
    assert client.lookups == 3
    assert client.metadata_updates >= 2


async def test_an_error_that_is_not_retriable_still_fails(tmp_path: Path) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path))
    sender = FakeSender(Client(TransactionalIdAuthorizationFailed("denied")))
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await Sender._find_coordinator(sender, TRANSACTION, "app-0-1")
