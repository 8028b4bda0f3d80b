"""Registries that parse but could never do what they say are rejected at load time, with the
file, the field and the fix (streams/core/registry_meaning.py)."""

from __future__ import annotations

import pytest

from phaseflow.agents.predictions import systems
from phaseflow.streams.core import system_ids
from phaseflow.streams.core.registry import RegistryError, load_registry, parse_registry

SYSTEM = '[[systems]]\nsystem_id = "moving_average_baseline_v1"\n'


def phase(number: int, *extra: str, processors: str = '["a", "b", "c"]') -> str:
    names = processors if number == 4 else f'["p{number}"]'
    return f'[[phases]]\nphase = {number}\nname = "n{number}"\nprocessors = {names}\n' + "".join(
        f"{line}\n" for line in extra
    )


def problems(text: str) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="my.toml")
    lines = str(caught.value).splitlines()
    assert all(line.startswith("my.toml: ") for line in lines), lines
    return [line.removeprefix("my.toml: ") for line in lines]


def test_deadlines_on_a_phase_without_successor_are_rejected() -> None:
    found = problems(phase(4, 'tiers = [{ after = "1h", min_complete = 2 }]', 'max_wait = "4h"'))
    assert found == [
        (
            "phases[0].tiers: phase 4 has no successor: phase 5 is not declared, so this deadline "
            "can never take effect; declare [[phases]] phase = 5 or remove tiers"
        ),
        (
            "phases[0].max_wait: phase 4 has no successor: phase 5 is not declared, so this "
            "deadline can never take effect; declare [[phases]] phase = 5 or remove max_wait"
        ),
    ]


def test_deadlines_on_the_last_phase_are_rejected() -> None:
    text = phase(5) + 'max_wait = "1h"\n' + phase(6) + 'max_wait = "1h"\n' + SYSTEM
    assert problems(text) == [
        (
            "phases[1].max_wait: phase 6 has no successor: phase 7 is not declared, so this "
            "deadline can never take effect; declare [[phases]] phase = 7 or remove max_wait"
        )
    ]


def test_deadlines_on_an_ungated_phase_are_rejected() -> None:
    text = phase(1, "gated = false", 'max_wait = "1h"') + phase(2)
    assert problems(text) == [
        (
            "phases[0].max_wait: phase 1 is not gated (gated = false), so it never fires, so this "
            "deadline can never take effect; set gated = true or remove max_wait"
        )
    ]


def test_a_validation_gate_without_successor_is_rejected() -> None:
    found = problems(phase(5, "validation = { min_predictions = 1 }") + SYSTEM)
    assert found == [
        (
            "phases[0].validation: phase 5 has no successor: phase 6 is not declared, so this "
            "validation gate can never take effect; declare [[phases]] phase = 6 or remove "
            "validation"
        )
    ]


def test_deadlines_with_a_successor_are_accepted() -> None:
    text = phase(4, 'tiers = [{ after = "1h", min_complete = 2 }]', 'max_wait = "4h"') + phase(5)
    loaded = parse_registry(text + SYSTEM)
    assert loaded.phase(4).max_wait is not None


def test_phase_5_without_systems_is_rejected() -> None:
    assert problems(phase(5)) == [
        (
            "systems: phase 5 is declared but no prediction system is enabled, so every prediction "
            "batch would end with 0 predictions; add a [[systems]] entry with system_id = one of: "
            "ensemble_v1, moving_average_baseline_v1, recency_trend_v1, similarity_balanced_v1, "
            "zone_matchup_v1"
        )
    ]


def test_phase_5_with_every_system_disabled_is_rejected() -> None:
    text = phase(5) + SYSTEM + "enabled = false\n"
    assert problems(text) == [
        (
            "systems[0].enabled: phase 5 is declared but no prediction system is enabled, so every "
            "prediction batch would end with 0 predictions; set enabled = true on at least one "
            "[[systems]] entry"
        )
    ]


def test_systems_are_not_needed_without_phase_5() -> None:
    assert parse_registry(phase(4) + phase(6)).systems == ()


def test_an_unknown_system_id_is_rejected_with_the_closest_known_one() -> None:
    text = phase(4) + SYSTEM + '[[systems]]\nsystem_id = "zone_matchup_v2"\n'
    assert problems(text) == [
        (
            "systems[1].system_id: 'zone_matchup_v2' is not a prediction system phaseflow "
            "implements; did you mean 'zone_matchup_v1'?"
        )
    ]


def test_an_unknown_system_id_lists_the_known_ones_when_nothing_is_close() -> None:
    [found] = problems(phase(4) + '[[systems]]\nsystem_id = "xgboost"\nenabled = false\n')
    assert found.endswith(
        "use one of: ensemble_v1, moving_average_baseline_v1, "
        "recency_trend_v1, similarity_balanced_v1, zone_matchup_v1"
    )


def test_known_systems_can_be_passed_in_for_plugins() -> None:
    text = phase(5) + '[[systems]]\nsystem_id = "plugin_v1"\n'
    assert parse_registry(text, known_systems={"plugin_v1"}).enabled_systems[0].system_id == (
        "plugin_v1"
    )


def test_the_registry_knows_every_implemented_system_and_nothing_else() -> None:
    # The ids are the ground floor's (phaseflow.streams.core.system_ids), the systems the agents'.
    assert set(systems.SYSTEM_FACTORIES) == set(system_ids.known_system_ids())
    assert set(systems.SYSTEM_FACTORIES) >= system_ids.BUILTIN_SYSTEM_IDS


def test_a_system_registered_by_a_plugin_is_accepted_without_passing_it_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(systems, "SYSTEM_FACTORIES", dict(systems.SYSTEM_FACTORIES))
    monkeypatch.setattr(system_ids, "_registered", set())
    text = phase(5) + '[[systems]]\nsystem_id = "plugin_v1"\n'
    assert problems(text)
    systems.register_system("plugin_v1", systems.MovingAverageBaseline)
    assert parse_registry(text).enabled_systems[0].system_id == "plugin_v1"


@pytest.mark.parametrize("field", ["critical", "same_day_processors"])
def test_a_member_not_among_processors_names_the_fix(field: str) -> None:
    [found] = problems(phase(4, f'{field} = ["zz"]'))
    assert found == (
        f"phases[0].{field}[0]: 'zz' is not one of this phase's processors; add it to "
        f"phases[0].processors or remove it from {field}"
    )


def test_a_tier_that_can_never_be_met_names_the_fix() -> None:
    text = phase(4, 'tiers = [{ after = "1h", min_complete = 4 }]') + phase(5) + SYSTEM
    assert problems(text) == [
        (
            "phases[0].tiers[0].min_complete: 4 is more than the 3 processors this phase waits "
            "for, so the tier can never be met; lower it to at most 3"
        )
    ]


def test_the_shipped_registry_means_what_it_says() -> None:
    assert len(load_registry(None).enabled_systems) == 5
