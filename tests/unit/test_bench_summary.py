"""``python -m bench``'s summary keeps the readiness rows, with the exactly_once floor beside the
bare Faust agent when the readiness benchmark measured it (bench/__main__.py)."""

from __future__ import annotations

from typing import Any

from bench.__main__ import summary_rows


def _readiness(**extra: Any) -> dict[str, Any]:
    return {
        "broker": "kafka",
        "agent_events_per_s": 2_000,
        "raw_events_per_s": 150_000,
        "ratio": 0.0133,
        "faust_noop_events_per_s": 9_000,
        "ratio_to_faust_noop": 0.222,
        "faust_table_write_events_per_s": 4_000,
        "ratio_to_faust_table_write": 0.5,
        "quix_events_per_s": {"at_least_once": 40_000},
        "ratio_to_quix": {"at_least_once": 0.05},
        "backfill": {
            "completions": 16_060,
            "dates": 365,
            "settled_seconds": 9.0,
            "repeated_triggers": 0,
        },
        "latency": [],
        **extra,
    }


def test_the_exactly_once_floor_is_a_row_beside_the_bare_agent() -> None:
    readiness = _readiness(
        faust_noop_exactly_once_events_per_s=5_000, ratio_to_faust_noop_exactly_once=0.4
    )
    rows = summary_rows({"readiness": readiness})

    measures = [row[0] for row in rows]
    floor = measures.index("readiness agent vs bare Faust agent, exactly_once")
    assert measures[floor - 1] == "readiness agent vs bare Faust agent (no work)"
    assert rows[floor][1:3] == ("2,000 vs 5,000", "ratio 0.4")


def test_no_floor_row_on_a_broker_without_transactions() -> None:
    readiness = _readiness(
        broker="tansu",
        faust_noop_exactly_once_events_per_s=None,
        ratio_to_faust_noop_exactly_once=None,
    )
    measures = [row[0] for row in summary_rows({"readiness": readiness})]

    assert "readiness agent vs bare Faust agent, exactly_once" not in measures
    assert "readiness agent vs bare Faust agent (no work)" in measures
