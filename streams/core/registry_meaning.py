"""Registry rules about meaning: a file that parses but could never do what it says.

Syntax and field types are checked by the models in :mod:`phaseflow.streams.core.registry`; this
module finds configurations that load and then silently do nothing: deadlines that can never fire, a
prediction phase with no system to run, a system id no code implements. Each problem is one
line ``<field>: <what is wrong>; <what to do>``, which the loader prefixes with the file name.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from phaseflow.streams.core.registry import PhaseSpec, Registry

#: The phase the prediction coordinator runs: it needs enabled systems.
PREDICTIONS_PHASE: Final = 5


def meaning_problems(registry: Registry, known_systems: Collection[str]) -> list[str]:
    """Every rule of meaning ``registry`` breaks; ``known_systems`` are the implemented ids."""
    problems: list[str] = []
    for index, spec in enumerate(registry.phases):
        problems += _unreachable_deadlines(index, spec, registry)
    problems += _unknown_systems(registry, known_systems)
    problems += _predictions_without_systems(registry, known_systems)
    return problems


def _unreachable_deadlines(index: int, spec: PhaseSpec, registry: Registry) -> list[str]:
    """Deadlines and the validation gate act only when the phase can fire its successor."""
    fields = [
        name
        for name, present in (
            ("tiers", bool(spec.tiers)),
            ("max_wait", spec.max_wait is not None),
            ("validation", spec.validation is not None),
        )
        if present
    ]
    if not fields:
        return []
    if not spec.gated:
        why = f"phase {spec.phase} is not gated (gated = false), so it never fires"
        fix = "set gated = true or remove"
    elif not registry.has_phase(spec.phase + 1):
        why = f"phase {spec.phase} has no successor: phase {spec.phase + 1} is not declared"
        fix = f"declare [[phases]] phase = {spec.phase + 1} or remove"
    else:
        return []
    return [
        f"phases[{index}].{field}: {why}, so this {_what(field)} can never take effect; "
        f"{fix} {field}"
        for field in fields
    ]


def _what(field: str) -> str:
    return "validation gate" if field == "validation" else "deadline"


def _unknown_systems(registry: Registry, known_systems: Collection[str]) -> list[str]:
    problems: list[str] = []
    known = sorted(known_systems)
    for index, system in enumerate(registry.systems):
        if system.system_id in known_systems:
            continue
        close = difflib.get_close_matches(system.system_id, known, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(known)}"
        problems.append(
            f"systems[{index}].system_id: {system.system_id!r} is not a prediction system "
            f"phaseflow implements; {fix}"
        )
    return problems


def _predictions_without_systems(registry: Registry, known_systems: Collection[str]) -> list[str]:
    if not registry.has_phase(PREDICTIONS_PHASE) or registry.enabled_systems:
        return []
    why = (
        f"phase {PREDICTIONS_PHASE} is declared but no prediction system is enabled, so every "
        "prediction batch would end with 0 predictions"
    )
    if registry.systems:
        return [f"systems[0].enabled: {why}; set enabled = true on at least one [[systems]] entry"]
    known = ", ".join(sorted(known_systems))
    return [f"systems: {why}; add a [[systems]] entry with system_id = one of: {known}"]
