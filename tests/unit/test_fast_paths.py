"""The readiness path's cheaper steps give the same answers as the generic ones they replace."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel

from phaseflow.agents.readiness_state import PhaseState, ProcessorRecord
from phaseflow.streams.core.registry import PhaseNotConfiguredError, load_registry

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _state() -> PhaseState:
    record = ProcessorRecord(
        status="success",
        record_count=3,
        first_completed_at=AT,
        last_completed_at=AT,
        last_execution_id="p/1/success",
    )
    return PhaseState(game_date=date(2026, 6, 1), phase=3, processors={"p": record})


def test_state_copy_matches_pydantic_copy() -> None:
    state = _state()
    update = {"deadline_at": AT, "seen_ids": ("p/1/success",)}
    fast = state.model_copy(update=update)
    generic = BaseModel.model_copy(state, update=update)
    assert fast == generic
    assert fast.model_fields_set == generic.model_fields_set
    assert fast.model_dump_json() == generic.model_dump_json()
    assert fast.deadline_at == AT
    assert state.deadline_at is None
    plain = state.model_copy()
    assert plain == state
    assert plain is not state
    assert plain.model_fields_set == state.model_fields_set
    assert state.model_copy(deep=True) == BaseModel.model_copy(state, deep=True)


def test_state_copy_keeps_its_own_fields_set() -> None:
    state = _state()
    copied = state.model_copy(update={"round": 2})
    assert "round" in copied.model_fields_set
    assert "round" not in state.model_fields_set


def test_table_key_is_the_formatted_date_and_phase() -> None:
    assert PhaseState.table_key(date(2026, 6, 1), 3) == "2026-06-01:3"
    assert _state().key == "2026-06-01:3"
    assert PhaseState.table_key(date(2026, 6, 2), 3) == "2026-06-02:3"


def test_registry_lookups_follow_a_copy_with_other_phases() -> None:
    registry = load_registry(None)
    assert registry.has_phase(4)
    name = registry.phase(4).processors[0]
    assert registry.phase_for_processor(name) == 4
    without_four = registry.model_copy(
        update={"phases": tuple(spec for spec in registry.phases if spec.phase != 4)}
    )
    assert not without_four.has_phase(4)
    assert without_four.phase_for_processor(name) is None
    with pytest.raises(PhaseNotConfiguredError):
        without_four.phase(4)
    # The original still answers from its own phases, and copies stay equal to fresh loads.
    assert registry.has_phase(4)
    assert registry.phase_for_processor(name) == 4
    assert registry == load_registry(None)


def test_phase_spec_lookups_follow_a_copy_with_other_groups() -> None:
    spec = load_registry(None).phase(2)
    first, second = spec.processors[0], "stand_in_source"
    grouped = spec.model_copy(update={"any_of": ((first, second),)})
    assert grouped.group_of(second) == (first, second)
    assert second in grouped.members
    assert spec.group_of(second) is None
    assert second not in spec.members
    assert grouped.required == spec.required  # the group counts as its primary
