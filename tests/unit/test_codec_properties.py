"""Codec properties: every valid event survives encode/decode; no input makes decode raise anything
but EventDecodeError. Also the Faust "orjson" codec."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from faust.serializers import codecs as faust_codecs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import (
    EVENT_MODELS,
    Alert,
    DeadLetter,
    Event,
    PhaseCompletion,
    PhaseTrigger,
    Prediction,
    PredictionRequest,
    RerunRequest,
)
from phaseflow.models.fields import (
    ALERT_KINDS,
    COMPLETION_STATUSES,
    RECOMMENDATIONS,
    RERUN_REASONS,
    SEVERITIES,
    TRIGGER_REASONS,
)
from phaseflow.streams.core.codecs import OrjsonCodec, register_orjson_codec

# --- strategies -----------------------------------------------------------------------------

_chars = st.characters(exclude_categories=["Cs"])  # lone surrogates are not UTF-8
text = st.text(_chars, min_size=1, max_size=20)
optional_text = st.none() | st.text(_chars, max_size=20)
identifiers = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=":"), min_size=1, max_size=20
).filter(lambda s: re.fullmatch(r"[^:\s]+", s) is not None)
game_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
# RFC 3339 offsets are whole minutes.
zones = st.just(UTC) | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - bounds of naive generation, zones added
    max_value=datetime(2100, 12, 30),  # noqa: DTZ001
    timezones=zones,
)
phases = st.integers(1, 6)
counts = st.integers(0, 2**63 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_chars, max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(_chars, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(_chars, max_size=8), json_values, max_size=4)
lines = st.integers(0, 9).flatmap(
    lambda places: st.decimals(
        min_value=0, max_value=1000, places=places, allow_nan=False, allow_infinity=False
    )
)
non_negative = st.floats(min_value=0, max_value=1e9, allow_nan=False)


def _model(model: type[Event], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Through model_validate, so generated instances pass the same validators as decoded ones.
    return st.fixed_dictionaries(fields).map(model.model_validate)


STRATEGIES: dict[type[Event], st.SearchStrategy[Any]] = {
    PhaseCompletion: _model(
        PhaseCompletion,
        processor_name=identifiers,
        game_date=game_dates,
        phase=phases,
        status=st.sampled_from(COMPLETION_STATUSES),
        timestamp=timestamps,
        record_count=counts,
        execution_id=optional_text,
        correlation_id=optional_text,
        duration_seconds=st.none() | non_negative,
        error_message=optional_text,
        error_type=optional_text,
        metadata=json_objects,
    ),
    PhaseTrigger: _model(
        PhaseTrigger,
        game_date=game_dates,
        phase=phases,
        reason=st.sampled_from(TRIGGER_REASONS),
        rule=text,
        completed=st.lists(identifiers, max_size=5),
        missing=st.lists(identifiers, max_size=5),
        trigger_id=text,
        triggered_at=timestamps,
        correlation_id=optional_text,
    ),
    RerunRequest: _model(
        RerunRequest,
        game_date=game_dates,
        phase=phases,
        processor_name=identifiers,
        reason=st.sampled_from(RERUN_REASONS),
        attempt=st.integers(1, 100),
        request_id=text,
        requested_by=text,
        requested_at=timestamps,
    ),
    Alert: _model(
        Alert,
        kind=st.sampled_from(ALERT_KINDS),
        severity=st.sampled_from(SEVERITIES),
        subject=text,
        message=text,
        details=json_objects,
        raised_at=timestamps,
    ),
    DeadLetter: _model(
        DeadLetter,
        source_topic=text,
        partition=st.integers(0, 10_000),
        offset=counts,
        key=optional_text,
        value=st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        error=text,
        error_type=text,
        attempts=st.integers(0, 100),
        failed_at=timestamps,
    ),
    PredictionRequest: _model(
        PredictionRequest,
        request_id=text,
        batch_id=text,
        game_date=game_dates,
        game_id=text,
        player_lookup=identifiers,
        line_values=st.lists(lines, max_size=4),
        requested_at=timestamps,
        correlation_id=optional_text,
    ),
    Prediction: st.one_of(
        st.tuples(lines, st.sampled_from(RECOMMENDATIONS)),
        st.tuples(st.none(), st.just("NO_LINE")),
    ).flatmap(
        lambda pair: _model(
            Prediction,
            prediction_id=text,
            game_date=game_dates,
            game_id=text,
            player_lookup=identifiers,
            system_id=identifiers,
            current_points_line=st.just(pair[0]),
            predicted_points=non_negative,
            confidence_score=st.floats(0, 100),
            recommendation=st.just(pair[1]),
            model_version=text,
            batch_id=text,
            created_at=timestamps,
        )
    ),
}

MODELS = pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)


def test_every_model_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(EVENT_MODELS)


# --- properties -----------------------------------------------------------------------------


@MODELS
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_encode_round_trip(model: type[Event], data: st.DataObject) -> None:
    event = data.draw(STRATEGIES[model])
    wire = encode(event)
    again = decode(model, wire)
    assert again == event
    # Encoding is canonical: a decoded event encodes to the very same bytes.
    assert encode(again) == wire


@MODELS
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_exact_fields_are_written_exactly(model: type[Event], data: st.DataObject) -> None:
    event = data.draw(STRATEGIES[model])
    wire = orjson.loads(encode(event))
    for name, value in event.model_dump().items():
        if isinstance(value, Decimal):
            assert wire[name] == format(value, "f")
        elif isinstance(value, datetime):
            assert datetime.fromisoformat(wire[name]) == value
            assert wire[name][-6] in "+-"  # always an explicit offset
        elif isinstance(value, date):
            assert wire[name] == value.isoformat()


def _decode_or_reject(model: type[Event], raw: bytes) -> None:
    try:
        decode(model, raw, max_bytes=4096)
    except EventDecodeError as error:
        problem = error
    else:
        return
    assert problem.reason
    assert problem.error_type in {
        "oversized",
        "not_json",
        "not_object",
        "invalid_field",
        "unknown_phase",
        "naive_timestamp",
        "missing_field",
        "not_utf8",
    }


@MODELS
@settings(deadline=None)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_errors(model: type[Event], raw: bytes) -> None:
    _decode_or_reject(model, raw)


@MODELS
@settings(deadline=None)
@given(value=json_values)
def test_arbitrary_json_raises_only_decode_errors(model: type[Event], value: Any) -> None:
    _decode_or_reject(model, orjson.dumps(value))


@MODELS
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_bad_field_raises_only_decode_errors(model: type[Event], data: st.DataObject) -> None:
    # Start from a valid event and break one field: the most realistic bad input.
    payload = orjson.loads(encode(data.draw(STRATEGIES[model])))
    field = data.draw(st.sampled_from(sorted(payload)))
    payload[field] = data.draw(json_values)
    if data.draw(st.booleans()):
        del payload[field]
    _decode_or_reject(model, orjson.dumps(payload))


@given(raw=st.binary(min_size=11, max_size=40))
def test_oversized_is_checked_before_parsing(raw: bytes) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(PhaseCompletion, raw, max_bytes=10)
    assert caught.value.error_type == "oversized"
    assert str(len(raw)) in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b"{", "not_json"),
        (b"", "not_json"),
        (b"NaN", "not_json"),
        (b"[]", "not_object"),
        (b'"text"', "not_object"),
        (b"{}", "missing_field"),
    ],
)
def test_decode_error_types(raw: bytes, error_type: str) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(PhaseCompletion, raw)
    assert caught.value.error_type == error_type
    assert isinstance(caught.value, ValueError)


@settings(max_examples=20, deadline=None)
@given(event=STRATEGIES[Alert])
def test_decode_accepts_bytearray_and_memoryview(event: Alert) -> None:
    wire = encode(event)
    assert decode(Alert, bytearray(wire)) == event
    assert decode(Alert, memoryview(wire)) == event


# --- Faust codec ----------------------------------------------------------------------------


def test_orjson_codec_round_trips_through_faust() -> None:
    register_orjson_codec()
    register_orjson_codec()  # idempotent
    assert isinstance(faust_codecs.get_codec("orjson"), OrjsonCodec)
    value = {"game_date": "2024-01-15", "phase": 3, "lines": [25.5, None], "nested": {"ok": True}}
    wire = faust_codecs.dumps("orjson", value)
    assert isinstance(wire, bytes)
    assert orjson.loads(wire) == value
    assert faust_codecs.loads("orjson", wire) == value


def test_orjson_codec_writes_decimals_and_models_exactly() -> None:
    register_orjson_codec()
    now = datetime(2024, 1, 15, 18, 30, tzinfo=UTC)
    event = Alert(kind="dlq", severity="info", subject="x", message="m", raised_at=now)
    wire = faust_codecs.dumps("orjson", {"line": Decimal("25.50"), "alert": event})
    loaded = faust_codecs.loads("orjson", wire)
    assert loaded["line"] == "25.50"
    assert Alert.model_validate(loaded["alert"]) == event
