"""Repeated library log lines are collapsed (phaseflow.streams.core.log_repeats): the first of
a kind shown, repeats counted for the window, the next one after it shown with the count;
phaseflow's own lines and INFO records always shown; two handlers never disagree."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from phaseflow.streams.core.log_repeats import RepeatedLogFilter, collapse_repeats_on_root


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def _shown(flt: RepeatedLogFilter, records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records if flt.filter(record)]


def test_first_record_of_a_kind_is_shown_and_repeats_in_the_window_are_not() -> None:
    clock = Clock()
    flt = RepeatedLogFilter(60, clock=clock)
    connect = "Unable connect to node with id %s: %s"
    records = [_record("aiokafka.conn", connect, node, "refused") for node in (1, 2, 1, 1)]
    records.append(_record("aiokafka.client", "Unable to update metadata from %s", [1]))
    assert _shown(flt, records) == [
        "Unable connect to node with id 1: refused",
        "Unable to update metadata from [1]",
    ]


def test_the_next_repeat_after_the_window_is_shown_with_how_many_were_left_out() -> None:
    clock = Clock()
    flt = RepeatedLogFilter(60, clock=clock)
    connect = "Unable connect to node with id %s: %s"
    assert _shown(flt, [_record("aiokafka.conn", connect, 1, "refused") for _ in range(500)]) == [
        "Unable connect to node with id 1: refused"
    ]
    clock.now += 59.9
    assert not flt.filter(_record("aiokafka.conn", connect, 1, "refused"))
    clock.now += 0.1
    assert _shown(flt, [_record("aiokafka.conn", connect, 1, "refused")]) == [
        "Unable connect to node with id 1: refused [500 more like this in the last 60 s not shown]"
    ]
    # The window starts again from the line just shown; nothing left out, no count.
    clock.now += 61
    assert _shown(flt, [_record("aiokafka.conn", connect, 1, "refused")]) == [
        "Unable connect to node with id 1: refused"
    ]


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("phaseflow.agents.readiness", logging.WARNING),  # our own lines: each one matters
        ("phaseflow.streams.faust_gap_report", logging.ERROR),
        ("aiokafka.consumer.fetcher", logging.INFO),  # below WARNING: not an error flood
        ("aiokafkafake", logging.ERROR),  # only the library names and their children
    ],
)
def test_records_outside_library_warnings_are_always_shown(name: str, level: int) -> None:
    flt = RepeatedLogFilter(60, clock=Clock())
    records = [_record(name, "dead-lettered %s", offset, level=level) for offset in range(5)]
    assert len(_shown(flt, records)) == 5


@pytest.mark.parametrize("name", ["faust.transport.consumer", "mode.services", "kafka.conn"])
def test_faust_and_mode_repeats_are_collapsed_too(name: str) -> None:
    flt = RepeatedLogFilter(60, clock=Clock())
    records = [_record(name, "Timer commit is overlapping", level=logging.WARNING)] * 3
    assert len(_shown(flt, [_record(r.name, r.msg, level=r.levelno) for r in records])) == 1


def test_a_window_of_zero_shows_every_record() -> None:
    flt = RepeatedLogFilter(0, clock=Clock())
    records = [_record("aiokafka.conn", "Unable connect to node with id %s", 1)] * 4
    assert len(_shown(flt, [_record(r.name, r.msg, 1) for r in records])) == 4


def test_a_record_is_decided_once_whatever_the_number_of_handlers() -> None:
    clock = Clock()
    flt = RepeatedLogFilter(60, clock=clock)
    record = _record("aiokafka.conn", "Unable connect to node with id %s", 1)
    # The second handler's filter sees the record the first one let through: shown, not a repeat.
    assert flt.filter(record)
    assert flt.filter(record)
    repeat = _record("aiokafka.conn", "Unable connect to node with id %s", 1)
    assert not flt.filter(repeat)
    assert not flt.filter(repeat)
    clock.now += 60
    shown = _record("aiokafka.conn", "Unable connect to node with id %s", 1)
    assert flt.filter(shown)
    assert flt.filter(shown)
    assert shown.getMessage().endswith("[1 more like this in the last 60 s not shown]")


@pytest.fixture
def root_handlers() -> Iterator[list[logging.Handler]]:
    root = logging.getLogger()
    kept, root.handlers = root.handlers, []
    try:
        yield root.handlers
    finally:
        root.handlers = kept


def test_the_filter_goes_on_every_root_handler_once(root_handlers: list[logging.Handler]) -> None:
    streams = [io.StringIO(), io.StringIO()]
    for stream in streams:
        root_handlers.append(logging.StreamHandler(stream))
    first = collapse_repeats_on_root(30)
    again = collapse_repeats_on_root(30)
    assert first is again
    assert all(handler.filters == [first] for handler in root_handlers)
    log = logging.getLogger("aiokafka.conn")
    for _ in range(10):
        log.error("Unable connect to node with id %s: %s", 1, "refused")
    logging.getLogger("phaseflow.test").error("ours %s", 1)
    logging.getLogger("phaseflow.test").error("ours %s", 2)
    for stream in streams:
        assert stream.getvalue().splitlines() == [
            "Unable connect to node with id 1: refused",
            "ours 1",
            "ours 2",
        ]
    # A handler added by a later reconfiguration gets the same filter.
    late = io.StringIO()
    root_handlers.append(logging.StreamHandler(late))
    assert collapse_repeats_on_root(30) is first
    log.error("Unable connect to node with id %s: %s", 1, "refused")
    assert late.getvalue() == ""


def test_a_counted_record_formats_under_fausts_formatter() -> None:
    """mode's ExtensionFormatter turns ``args=None`` into ``(None,)``: the counted record must
    carry an empty tuple, else formatting it fails ("not all arguments converted")."""
    from mode.utils.logging import ExtensionFormatter

    clock = Clock()
    flt = RepeatedLogFilter(5, clock=clock)
    formatter = ExtensionFormatter(stream=io.StringIO(), fmt="%(message)s")
    make = lambda: _record("aiokafka", 'Unable connect to "%s": 100%% %s', "h:1", "refused")  # noqa: E731
    assert flt.filter(make())
    assert not flt.filter(make())
    clock.now += 5
    counted = make()
    assert flt.filter(counted)
    assert formatter.format(counted) == (
        'Unable connect to "h:1": 100% refused [1 more like this in the last 5 s not shown]'
    )
