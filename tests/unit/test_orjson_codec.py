"""One JSON writer: the Faust ``"orjson"`` codec and the event codec write the same bytes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from phaseflow.models.codec import dumps, encode
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core.codecs import OrjsonCodec


def completion() -> PhaseCompletion:
    return PhaseCompletion(
        game_date=date(2026, 1, 15),
        phase=2,
        processor_name="p2_odds_game_lines",
        status="success",
        timestamp=datetime(2026, 1, 15, 18, 0, tzinfo=UTC),
        record_count=3,
        metadata={"line": "25.5"},
    )


def test_the_faust_codec_writes_what_the_event_codec_writes() -> None:
    event = completion()
    assert OrjsonCodec().dumps(event) == encode(event)
    assert OrjsonCodec().loads(encode(event)) == orjson.loads(encode(event))


def test_decimals_are_exact_text_and_sets_sorted() -> None:
    assert orjson.loads(dumps({"line": Decimal("25.50"), "ids": {"b", "a"}})) == {
        "line": "25.50",
        "ids": ["a", "b"],
    }


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object()})
