"""Library records held back inside the block only: aiokafka's own code logs them."""

from __future__ import annotations

import asyncio
import logging
import weakref

import pytest
from aiokafka.conn import AIOKafkaConnection

from phaseflow.streams.core.held_records import (
    HeldRecords,
    is_refused_connection,
    is_undecodable_answer,
)


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


def undecodable() -> HeldRecords:
    return HeldRecords(("aiokafka.conn",), is_undecodable_answer)


async def test_a_decode_error_inside_the_block_is_held(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    decode_error = ValueError("unpack requires a buffer of 4 bytes")
    with undecodable() as held:
        await report_read_error(decode_error)
    assert not caplog.records
    assert [r.exc_info[1] for r in held.held if r.exc_info] == [decode_error]


async def test_outside_the_block_or_disabled_the_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    disabled = HeldRecords(("aiokafka.conn",), is_undecodable_answer, enabled=False)
    with disabled:
        await report_read_error(ValueError("bad answer"))
    with undecodable():
        pass
    await report_read_error(ValueError("bad answer"))
    logged = [r for r in caplog.records if r.name == "aiokafka.conn"]
    assert len(logged) == 2
    assert all(r.exc_info for r in logged)
    assert not disabled.held
    assert not logging.getLogger("aiokafka.conn").filters


async def test_other_connection_errors_still_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with undecodable() as held:
        await report_read_error(RuntimeError("not a decode error"))
        logging.getLogger("aiokafka.conn").error("Unexpected exception in AIOKafkaConnection")
    assert len([r for r in caplog.records if r.name == "aiokafka.conn"]) == 2
    assert not held.held


def test_refused_connections_are_matched_in_both_of_aiokafkas_forms() -> None:
    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, "client.py", 1, msg, args, None)

    assert is_refused_connection(record('Unable connect to "%s:%s": %s', "h", 9092, "refused"))
    assert is_refused_connection(record("Unable connect to node with id %s: %s", 1, "refused"))
    assert not is_refused_connection(record("Unable to request metadata from %s", "h"))
