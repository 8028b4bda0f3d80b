"""A gap Faust records on a topic written outside transactions is logged as a loss
(streams/faust_gap_report.py), through Faust's own Consumer._add_gap."""

from __future__ import annotations

import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from phaseflow.streams.faust_gap_report import report_skipped_offsets

PROGRESS = "pf-gap-report.prediction-progress"
TRIGGERS = "pf-gap-report.phase-triggers"


def consumer(committed: int | None = None) -> Any:
    """The state Faust's _add_gap reads and writes: committed offsets and gap trees."""
    offsets: defaultdict[TP, int | None] = defaultdict(lambda: committed)
    return SimpleNamespace(_committed_offset=offsets, _gap=defaultdict(IntervalTree))


async def test_a_gap_on_a_watched_topic_is_logged_and_still_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report_skipped_offsets([PROGRESS])
    state = consumer(committed=1)
    tp = TP(PROGRESS, 2)
    with caplog.at_level(logging.WARNING, logger="phaseflow.streams.faust_gap_report"):
        # The restarted worker's case: read offset 1, next record delivered at 301.
        await Consumer._add_gap(state, tp, 2, 301)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"{PROGRESS}[2]: Faust went from offset 1 to 301, skipping 2-300" in message
    assert "299 record(s) are lost" in message
    assert state._gap[tp].overlaps(2, 301)  # Faust's own bookkeeping goes on unchanged


async def test_a_gap_on_a_transactional_topic_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report_skipped_offsets([PROGRESS])
    state = consumer(committed=3)
    with caplog.at_level(logging.WARNING, logger="phaseflow.streams.faust_gap_report"):
        await Consumer._add_gap(state, TP(TRIGGERS, 2), 4, 5)  # a transaction marker
    assert caplog.records == []
    assert state._gap[TP(TRIGGERS, 2)].overlaps(4, 5)
