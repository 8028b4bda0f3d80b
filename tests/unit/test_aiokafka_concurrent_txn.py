"""AddOffsetsToTxn refused while the previous transaction's markers are written is retried
after 20 ms (streams/aiokafka_concurrent_txn.py); other answers keep aiokafka's handling."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import errors as aiokafka_errors
from aiokafka.producer.sender import AddOffsetsToTxnHandler

from phaseflow.streams.aiokafka_concurrent_txn import retry_concurrent_offsets_quickly


def handler(added: list[str]) -> AddOffsetsToTxnHandler:
    txn_manager = SimpleNamespace(consumer_group_added=added.append)
    sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=txn_manager)
    return AddOffsetsToTxnHandler(sender, "the-group")


def answer(error: type[aiokafka_errors.KafkaError]) -> SimpleNamespace:
    return SimpleNamespace(error_code=error.errno)


def test_concurrent_transactions_is_retried_after_20_ms() -> None:
    retry_concurrent_offsets_quickly()
    backoff = handler([]).handle_response(answer(aiokafka_errors.ConcurrentTransactions))
    assert backoff == 0.02  # aiokafka alone: 0.1


def test_other_answers_are_unchanged() -> None:
    retry_concurrent_offsets_quickly()
    added: list[str] = []
    assert handler(added).handle_response(SimpleNamespace(error_code=0)) is None
    assert added == ["the-group"]
    loading = answer(aiokafka_errors.CoordinatorLoadInProgressError)
    assert handler([]).handle_response(loading) == 0.1
