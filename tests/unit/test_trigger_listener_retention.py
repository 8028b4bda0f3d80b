"""The prediction trigger listener: old game dates (backfills) run, replayed history does not."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from phaseflow.agents.predictions.trigger_listener import command_for
from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseTrigger, RerunRequest
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.topics import TopicName

NOW = datetime(2026, 3, 20, 14, 0, tzinfo=UTC)
OLD_DATE = date(2026, 3, 12)  # older than retention_days = 7
RETENTION = timedelta(days=7)


def _trigger(game_date: date, triggered_at: datetime) -> bytes:
    return encode(
        PhaseTrigger(
            game_date=game_date,
            phase=5,
            reason="ready",
            rule="all_complete",
            trigger_id=PhaseTrigger.make_id(game_date, 5, "ready"),
            triggered_at=triggered_at,
        )
    )


def _rerun(game_date: date, requested_at: datetime) -> bytes:
    return encode(
        RerunRequest(
            game_date=game_date,
            phase=5,
            processor_name="prediction_coordinator",
            reason="manual",
            request_id=RerunRequest.make_id(game_date, 5, "prediction_coordinator|manual", 1),
            requested_by="cli",
            requested_at=requested_at,
        )
    )


def test_a_fresh_trigger_for_a_date_older_than_retention_starts_a_batch() -> None:
    command = command_for(
        TopicName.PHASE_TRIGGERS, _trigger(OLD_DATE, NOW), ManualClock(NOW), RETENTION
    )
    assert command is not None
    assert command.game_date == OLD_DATE
    assert command.requested_by == "trigger:ready"


def test_a_fresh_cli_rerun_of_an_old_date_starts_a_batch() -> None:
    command = command_for(
        TopicName.RERUN_REQUESTS, _rerun(OLD_DATE, NOW), ManualClock(NOW), RETENTION
    )
    assert command is not None
    assert command.game_date == OLD_DATE
    assert command.requested_by == "rerun:manual"


@pytest.mark.parametrize(
    ("topic", "raw"),
    [
        (TopicName.PHASE_TRIGGERS, _trigger(OLD_DATE, NOW - timedelta(days=8))),
        (TopicName.RERUN_REQUESTS, _rerun(OLD_DATE, NOW - timedelta(days=8))),
    ],
)
def test_a_record_published_longer_than_retention_ago_is_skipped_with_a_log(
    topic: TopicName, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="phaseflow.agents.predictions.trigger_listener"):
        assert command_for(topic, raw, ManualClock(NOW), RETENTION) is None
    assert "more than retention_days (7) ago" in caplog.text
