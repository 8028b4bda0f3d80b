"""aiokafka's traceback for an answer it cannot decode is held back inside the block only."""

from __future__ import annotations

import asyncio
import logging
import weakref

import pytest
from aiokafka.conn import AIOKafkaConnection

from phaseflow.streams.monitoring.undecodable_answers import UndecodableAnswers


async def failed_read(error: BaseException) -> asyncio.Task[None]:
    async def read() -> None:
        raise error

    task = asyncio.ensure_future(read())
    await asyncio.gather(task, return_exceptions=True)
    return task


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self, **_: object) -> None:
        self.closed = True


async def report_read_error(error: BaseException) -> None:
    """What aiokafka's connection does when its read task fails (its own code)."""
    connection = _Closable()
    AIOKafkaConnection._on_read_task_error(weakref.ref(connection), await failed_read(error))  # type: ignore[arg-type]
    assert connection.closed


async def test_a_decode_error_inside_the_block_is_held_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    decode_error = ValueError("unpack requires a buffer of 4 bytes")
    with UndecodableAnswers() as undecodable:
        await report_read_error(decode_error)
    assert not caplog.records
    assert undecodable.held == [decode_error]
    closed = ConnectionError("Connection at 127.0.0.1:9092 closed")
    assert undecodable.describe(closed) == (
        "Connection at 127.0.0.1:9092 closed; aiokafka could not decode the broker's answer"
    )


async def test_outside_the_block_or_disabled_the_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with UndecodableAnswers(enabled=False) as disabled:
        await report_read_error(ValueError("bad answer"))
    with UndecodableAnswers():
        pass
    await report_read_error(ValueError("bad answer"))
    logged = [r for r in caplog.records if r.name == "aiokafka.conn"]
    assert len(logged) == 2
    assert all(r.exc_info for r in logged)
    assert not disabled.held
    assert disabled.describe(TimeoutError()) == "TimeoutError"


async def test_other_connection_errors_still_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with UndecodableAnswers() as undecodable:
        await report_read_error(RuntimeError("not a decode error"))
        logging.getLogger("aiokafka.conn").error("Unexpected exception in AIOKafkaConnection")
    assert len([r for r in caplog.records if r.name == "aiokafka.conn"]) == 2
    assert not undecodable.held
