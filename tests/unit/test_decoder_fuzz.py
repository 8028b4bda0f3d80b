"""Fuzzing the decoders that are not event models (those are in test_codec_properties.py).

Every record read from a topic goes through a decoder that may raise only ``EventDecodeError``
(the dead letter's reason); the text parsers of the registry, the CLI and the phase names raise
only ``ValueError`` subclasses with a message. Anything else would crash a stream or a command.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from phaseflow.agents.predictions.messages import decode_progress
from phaseflow.agents.readiness_state import ReadinessTick
from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.phases import parse_phase
from phaseflow.streams.core.registry_fields import parse_duration
from phaseflow.streams.dlq_letters import parse_age

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
# Objects that look like progress records and ticks: the right keys, arbitrary values.
near_records = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["start", "complete", "check", "done", "deadline", "sla", "x"]),
        "game_date": st.sampled_from(["2026-03-01", "2026-02-30", "", "yesterday"]) | json_values,
    },
    optional={
        "batch_id": json_values,
        "issued_at": st.sampled_from(["2026-03-01T12:00:00+00:00", "2026-03-01T12:00"]),
        "player_lookup": json_values,
        "request_id": json_values,
        "predictions": json_values,
        "done_at": json_values,
        "source": json_values,
    },
)


def failure(call: Callable[[], object], allowed: type[Exception]) -> Exception | None:
    """The ``allowed`` exception ``call`` raised, or None; any other exception propagates."""
    try:
        call()
    except allowed as error:
        return error
    return None


def assert_explained(error: Exception | None) -> None:
    if isinstance(error, EventDecodeError):
        assert error.reason
        assert error.error_type


payloads = st.binary(max_size=300) | json_values.map(orjson.dumps) | near_records.map(orjson.dumps)


@settings(max_examples=400, deadline=None)
@given(raw=payloads)
def test_progress_records_decode_or_raise_only_decode_errors(raw: bytes) -> None:
    assert_explained(failure(lambda: decode_progress(raw, max_bytes=200), EventDecodeError))


@settings(max_examples=400, deadline=None)
@given(raw=payloads)
def test_readiness_ticks_decode_or_raise_only_decode_errors(raw: bytes) -> None:
    assert_explained(failure(lambda: decode(ReadinessTick, raw, max_bytes=200), EventDecodeError))


@settings(max_examples=400, deadline=None)
@given(value=st.text(max_size=20))
def test_durations_and_ages_parse_or_raise_value_errors(value: str) -> None:
    for parse in (parse_duration, parse_age):
        error = failure(partial(parse, value), ValueError)
        assert error is None or str(error)


@settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_phase_names_parse_to_1_to_6_or_raise_value_errors(value: Any) -> None:
    phases: list[int] = []
    error = failure(lambda: phases.append(parse_phase(value)), ValueError)
    assert str(error) if error is not None else 1 <= phases[0] <= 6
