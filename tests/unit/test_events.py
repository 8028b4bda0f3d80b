"""Event models: every validation rule of docs/contract.md#events, keys and ids."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import (
    Alert,
    DeadLetter,
    PhaseCompletion,
    PhaseTrigger,
    Prediction,
    PredictionRequest,
    RerunRequest,
)
from phaseflow.models.fields import line_text
from phaseflow.models.phases import parse_phase, phase_label

NOW = datetime(2024, 1, 15, 18, 30, tzinfo=UTC)


def completion(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "processor_name": "player_game_summary",
        "game_date": "2024-01-15",
        "phase": "phase_3_analytics",
        "status": "success",
        "record_count": 412,
        "execution_id": "exec-1",
        "correlation_id": "corr-1",
        "timestamp": "2024-01-15T18:30:00Z",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def prediction(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prediction_id": "p-1",
        "game_date": "2024-01-15",
        "game_id": "0022300555",
        "player_lookup": "lebronjames",
        "system_id": "moving_average_baseline_v1",
        "current_points_line": "25.5",
        "predicted_points": 27.25,
        "confidence_score": 71.5,
        "recommendation": "OVER",
        "model_version": "v1",
        "batch_id": "batch-1",
        "created_at": "2024-01-15T12:00:00-05:00",
    }
    data.update(changes)
    return data


def reject(model: type[Any], data: dict[str, Any]) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(model, orjson.dumps(data))
    return caught.value


# --- phases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (6, 6),
        ("phase_1_scrapers", 1),
        ("phase_2_raw", 2),
        ("phase_3_analytics", 3),
        ("phase_4_precompute", 4),
        ("phase_5_predictions", 5),
        ("phase_6_export", 6),
        ("phase_2", 2),
        ("2", 2),
        (" PHASE_4_PRECOMPUTE ", 4),
    ],
)
def test_phase_spellings_normalize_to_int(value: object, expected: int) -> None:
    assert parse_phase(value) == expected
    assert PhaseCompletion.model_validate(completion(phase=value)).phase == expected


@pytest.mark.parametrize("value", [0, 7, "phase_9", "phase_3_raw", "analytics", True, 3.0, [3], ""])
def test_unknown_phase_names_the_allowed_values(value: object) -> None:
    error = reject(PhaseCompletion, completion(phase=value))
    assert error.error_type == "unknown_phase"
    assert error.reason.startswith("phase: unknown phase")
    assert "1-6" in error.reason
    assert "phase_2_raw" in error.reason
    assert "phase_6_export" in error.reason


def test_phase_label() -> None:
    assert phase_label(3) == "phase_3_analytics"


# --- PhaseCompletion ------------------------------------------------------------------------


def test_completion_parses_production_message() -> None:
    event = decode(PhaseCompletion, orjson.dumps(completion(duration_seconds=12)))
    assert event.game_date == date(2024, 1, 15)
    assert event.phase == 3
    assert event.timestamp == NOW
    assert event.duration_seconds == 12.0
    assert event.is_done
    assert event.key == "2024-01-15"


@pytest.mark.parametrize("status", ["success", "partial", "failed", "skipped"])
def test_every_status_is_accepted(status: str) -> None:
    assert PhaseCompletion.model_validate(completion(status=status)).status == status


@pytest.mark.parametrize("status", ["done", "SUCCESS", "", 1])
def test_unknown_status_is_rejected(status: object) -> None:
    error = reject(PhaseCompletion, completion(status=status))
    assert error.error_type == "invalid_field"
    assert error.reason.startswith("status:")
    assert "'success'" in error.reason


@pytest.mark.parametrize(
    "value", ["2024-1-15", "15/01/2024", "2024-02-30", "2024-01-15T00:00:00Z", 20240115]
)
def test_bad_game_date_is_rejected(value: object) -> None:
    error = reject(PhaseCompletion, completion(game_date=value))
    assert error.error_type == "invalid_field"
    assert error.reason.startswith("game_date:")
    assert "YYYY-MM-DD" in error.reason


def test_game_date_rejects_a_datetime_from_python() -> None:
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        PhaseCompletion.model_validate(completion(game_date=NOW))


@pytest.mark.parametrize("value", ["2024-01-15T18:30:00", "2024-01-15 18:30:00.123"])
def test_naive_timestamp_is_rejected(value: str) -> None:
    error = reject(PhaseCompletion, completion(timestamp=value))
    assert error.error_type == "naive_timestamp"
    assert error.reason.startswith("timestamp:")
    assert "has no time zone" in error.reason


def test_naive_datetime_from_python_is_rejected() -> None:
    with pytest.raises(ValidationError, match="has no time zone"):
        PhaseCompletion.model_validate(completion(timestamp=datetime(2024, 1, 15, 18, 30)))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15T18:30:00Z", NOW),
        ("2024-01-15t18:30:00z", NOW),
        ("2024-01-15T13:30:00-05:00", NOW),
        ("2024-01-15 18:30:00+00:00", NOW),
        ("2024-01-15T18:30:00.123456789Z", NOW + timedelta(microseconds=123456)),
    ],
)
def test_rfc3339_timestamps_are_accepted(value: str, expected: datetime) -> None:
    assert PhaseCompletion.model_validate(completion(timestamp=value)).timestamp == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-01-15", "2024-13-01T00:00:00Z", "2024-01-15T25:00:00Z", 1705343400]
)
def test_malformed_timestamp_is_rejected(value: object) -> None:
    error = reject(PhaseCompletion, completion(timestamp=value))
    assert error.error_type == "invalid_field"
    assert error.reason.startswith("timestamp:")


def test_timestamp_offset_must_be_whole_minutes() -> None:
    odd = timezone(timedelta(seconds=90))
    with pytest.raises(ValidationError, match="whole minutes"):
        PhaseCompletion.model_validate(completion(timestamp=datetime(2024, 1, 1, tzinfo=odd)))


@pytest.mark.parametrize("value", [-1, "5", True, 1.5, None])
def test_record_count_must_be_a_non_negative_int(value: object) -> None:
    data = completion()
    data["record_count"] = value
    error = reject(PhaseCompletion, data)
    assert error.reason.startswith("record_count:")


def test_record_count_defaults_to_zero() -> None:
    data = completion()
    del data["record_count"]
    assert PhaseCompletion.model_validate(data).record_count == 0


@pytest.mark.parametrize("field", ["processor_name", "game_date", "phase", "status", "timestamp"])
def test_required_fields(field: str) -> None:
    data = completion()
    del data[field]
    error = reject(PhaseCompletion, data)
    assert error.error_type == "missing_field"
    assert error.reason == f"{field}: required field is missing"


@pytest.mark.parametrize("name", ["", "has space", "a:b", 42])
def test_processor_name_must_be_a_key_safe_name(name: object) -> None:
    assert reject(PhaseCompletion, completion(processor_name=name)).reason.startswith(
        "processor_name:"
    )


def test_wrong_types_fail() -> None:
    assert reject(PhaseCompletion, completion(duration_seconds="12")).reason.startswith(
        "duration_seconds:"
    )
    assert reject(PhaseCompletion, completion(metadata=[1])).reason.startswith("metadata:")
    assert reject(PhaseCompletion, completion(duration_seconds=-1)).error_type == "invalid_field"


def test_unknown_fields_are_kept_in_metadata() -> None:
    data = completion(source="cloud_run", rows_skipped=3, metadata={"source": "kept", "x": 1})
    event = decode(PhaseCompletion, orjson.dumps(data))
    # The existing metadata key wins; the new one is added.
    assert event.metadata == {"source": "kept", "x": 1, "rows_skipped": 3}


def test_unknown_fields_without_metadata() -> None:
    event = PhaseCompletion.model_validate(completion(extra={"a": [1, 2]}))
    assert event.metadata == {"extra": {"a": [1, 2]}}


def test_completion_is_frozen() -> None:
    event = PhaseCompletion.model_validate(completion())
    with pytest.raises(ValidationError):
        event.status = "failed"  # type: ignore[misc]


def test_dedup_id_is_processor_run_and_status() -> None:
    event = PhaseCompletion.model_validate(completion())
    assert event.dedup_id == f"{event.processor_name}/exec-1/success"
    failed = PhaseCompletion.model_validate(completion(status="failed"))
    other = PhaseCompletion.model_validate(completion(processor_name="team_defense_game_summary"))
    assert len({event.dedup_id, failed.dedup_id, other.dedup_id}) == 3


def test_dedup_id_without_execution_id_is_a_stable_hash() -> None:
    one = PhaseCompletion.model_validate(completion(execution_id=None))
    empty = PhaseCompletion.model_validate(completion(execution_id=""))
    same_instant = PhaseCompletion.model_validate(
        completion(execution_id=None, timestamp="2024-01-15T13:30:00-05:00", record_count=1)
    )
    later = PhaseCompletion.model_validate(
        completion(execution_id=None, timestamp="2024-01-15T18:31:00Z")
    )
    failed = PhaseCompletion.model_validate(completion(execution_id=None, status="failed"))
    assert len(one.dedup_id) == 32
    assert int(one.dedup_id, 16) >= 0
    assert one.dedup_id == empty.dedup_id == same_instant.dedup_id
    assert len({one.dedup_id, later.dedup_id, failed.dedup_id}) == 3
    assert one.dedup_id == decode(PhaseCompletion, encode(one)).dedup_id
    # Stable across processes and releases (state in changelogs depends on it): pinned.
    basis = b"player_game_summary|2024-01-15|success|2024-01-15T18:30:00+00:00"
    assert one.dedup_id == hashlib.sha256(basis).hexdigest()[:32]
    assert one.dedup_id == "55cecdf1c5700540edbe632512dae2da"


# --- other events ---------------------------------------------------------------------------


def trigger(**changes: Any) -> PhaseTrigger:
    data: dict[str, Any] = {
        "game_date": "2024-01-15",
        "phase": 4,
        "reason": "ready",
        "rule": "critical_plus_majority",
        "completed": ["player_game_summary"],
        "missing": [],
        "trigger_id": PhaseTrigger.make_id(date(2024, 1, 15), 4, "ready"),
        "triggered_at": "2024-01-15T18:30:00Z",
    }
    data.update(changes)
    return PhaseTrigger.model_validate(data)


def test_trigger_key_and_deterministic_id() -> None:
    event = trigger(phase="phase_4_precompute")
    assert event.key == "2024-01-15:4"
    assert event.trigger_id == PhaseTrigger.make_id(date(2024, 1, 15), 4, "ready")
    assert PhaseTrigger.make_id(date(2024, 1, 15), 4, "timeout") != event.trigger_id
    assert PhaseTrigger.make_id(date(2024, 1, 15), 4, "rerun", "r1") != PhaseTrigger.make_id(
        date(2024, 1, 15), 4, "rerun", "r2"
    )


def test_trigger_rejects_unknown_reason_and_naive_time() -> None:
    with pytest.raises(ValidationError, match="ready"):
        trigger(reason="because")
    with pytest.raises(ValidationError, match="has no time zone"):
        trigger(triggered_at="2024-01-15T18:30:00")


def test_rerun_request() -> None:
    event = RerunRequest.model_validate(
        {
            "game_date": "2024-01-15",
            "phase": "phase_2_raw",
            "processor_name": "p2_odds_game_lines",
            "reason": "missing_at_deadline",
            "attempt": 2,
            "request_id": RerunRequest.make_id(date(2024, 1, 15), 2, "p2_odds_game_lines", 2),
            "requested_by": "phaseflow",
            "requested_at": NOW,
        }
    )
    assert event.key == "2024-01-15:2:p2_odds_game_lines"
    assert event.request_id == RerunRequest.make_id(date(2024, 1, 15), 2, "p2_odds_game_lines", 2)
    assert event.request_id != RerunRequest.make_id(date(2024, 1, 15), 2, "p2_odds_game_lines", 3)
    with pytest.raises(ValidationError):
        event.model_validate({**event.model_dump(), "attempt": 0})
    with pytest.raises(ValidationError):
        event.model_validate({**event.model_dump(), "reason": "bored"})


def test_alert() -> None:
    event = Alert(
        kind="phase_timeout",
        severity="warning",
        subject="2024-01-15:4",
        message="phase 4 waited 4h",
        details={"missing": ["ml_feature_store"]},
        raised_at=NOW,
    )
    assert event.key == "phase_timeout:2024-01-15:4"
    with pytest.raises(ValidationError):
        Alert.model_validate({**event.model_dump(), "kind": "bad_vibes"})


def test_dead_letter_keeps_original_bytes() -> None:
    raw = b"\xff\x00 not json"
    letter = DeadLetter.wrap(
        source_topic="phaseflow.phase-completions",
        partition=1,
        offset=42,
        key=b"2024-01-15",
        value=raw,
        error="not valid JSON",
        error_type="not_json",
        failed_at=NOW,
    )
    assert letter.key == "2024-01-15"
    assert letter.value_bytes == raw
    assert decode(DeadLetter, encode(letter)).value_bytes == raw
    with pytest.raises(ValidationError, match="base64"):
        DeadLetter.model_validate({**letter.model_dump(), "value": "not base64!"})


def test_prediction_request() -> None:
    request = PredictionRequest(
        request_id=PredictionRequest.make_id("b1", date(2024, 1, 15), "lebronjames"),
        batch_id="b1",
        game_date=date(2024, 1, 15),
        game_id="0022300555",
        player_lookup="lebronjames",
        line_values=[Decimal("25.5"), Decimal("26.0")],
        requested_at=NOW,
    )
    assert request.key == "2024-01-15:lebronjames"
    again = decode(PredictionRequest, encode(request))
    assert again == request
    assert [str(v) for v in again.line_values] == ["25.5", "26.0"]
    assert request.request_id == PredictionRequest.make_id("b1", date(2024, 1, 15), "lebronjames")


def test_other_models_ignore_unknown_fields() -> None:
    event = decode(Prediction, orjson.dumps(prediction(surprise=1)))
    assert not hasattr(event, "surprise")


# --- Prediction -----------------------------------------------------------------------------


def test_prediction_line_is_exact_and_encoded_as_a_string() -> None:
    event = decode(Prediction, orjson.dumps(prediction(current_points_line="25.50")))
    assert event.current_points_line == Decimal("25.50")
    assert orjson.loads(encode(event))["current_points_line"] == "25.50"
    assert orjson.loads(event.model_dump_json())["current_points_line"] == "25.50"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (25.5, Decimal("25.5")),
        (0.1, Decimal("0.1")),
        (26, Decimal(26)),
        ("  19.5 ", Decimal("19.5")),
    ],
)
def test_prediction_line_from_json_number_or_string(line: object, expected: Decimal) -> None:
    event = decode(Prediction, orjson.dumps(prediction(current_points_line=line)))
    assert event.current_points_line == expected
    assert str(event.current_points_line) == str(expected)


@pytest.mark.parametrize("line", [True, "abc", "NaN", "Infinity", -0.5, 1001, "1e-12", [25.5]])
def test_prediction_line_rejects_non_lines(line: object) -> None:
    error = reject(Prediction, prediction(current_points_line=line))
    assert error.error_type == "invalid_field"
    assert error.reason.startswith("current_points_line:")


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("25.5", "25.5"),
        ("26", "26.0"),
        ("26.0", "26.0"),
        ("26.00", "26.0"),
        ("25.250", "25.25"),
        ("0", "0.0"),
        ("-0", "0.0"),
        ("100", "100.0"),
        ("1E+2", "100.0"),
    ],
)
def test_prediction_key_uses_canonical_line_text(line: str, text: str) -> None:
    event = Prediction.model_validate(prediction(current_points_line=line))
    assert event.key == f"2024-01-15:lebronjames:moving_average_baseline_v1:{text}"
    assert line_text(Decimal(line).copy_abs()) == text


def test_prediction_without_line_only_for_no_line() -> None:
    data = prediction(recommendation="NO_LINE")
    del data["current_points_line"]
    event = Prediction.model_validate(data)
    assert event.key.endswith(":NO_LINE")
    data["recommendation"] = "OVER"
    error = reject(Prediction, data)
    assert "current_points_line" in error.reason
    assert "NO_LINE" in error.reason


@pytest.mark.parametrize("score", [-0.1, 100.5, "80", True])
def test_confidence_score_is_0_to_100(score: object) -> None:
    assert reject(Prediction, prediction(confidence_score=score)).reason.startswith(
        "confidence_score:"
    )


@pytest.mark.parametrize("value", ["over", "HOLD", None])
def test_recommendation_values(value: object) -> None:
    assert reject(Prediction, prediction(recommendation=value)).reason.startswith("recommendation:")


def test_prediction_make_id_is_deterministic() -> None:
    one = Prediction.make_id("b", date(2024, 1, 15), "x", "s", Decimal("26"))
    assert one == Prediction.make_id("b", date(2024, 1, 15), "x", "s", Decimal("26.00"))
    assert one != Prediction.make_id("b", date(2024, 1, 15), "x", "s", Decimal("26.5"))
