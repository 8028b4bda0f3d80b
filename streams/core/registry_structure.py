"""Registry rules that span fields: membership, uniqueness, tier order.

Field types and ranges are checked by the models in :mod:`phaseflow.streams.core.registry`, what a
file means by :mod:`phaseflow.streams.core.registry_meaning`. Each problem is one line
``<field>: <what is wrong>``, which the loader prefixes with the file name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phaseflow.streams.core.registry_fields import format_duration

if TYPE_CHECKING:
    from phaseflow.streams.core.registry import PhaseSpec, Registry


def _check_members(index: int, spec: PhaseSpec) -> list[str]:
    problems: list[str] = []
    where = f"phases[{index}]"
    known = set(spec.processors)
    primaries = {group[0] for group in spec.any_of}
    if not known and not primaries:
        problems.append(f"{where}.processors: a phase needs at least one processor")
    problems += _check_groups(where, spec)
    for field in ("processors", "critical", "optional", "same_day_processors"):
        seen: set[str] = set()
        for position, name in enumerate(getattr(spec, field)):
            at = f"{where}.{field}[{position}]"
            if name in seen:
                problems.append(f"{at}: {name!r} is listed twice")
            seen.add(name)
            # critical and same_day_processors may name a group by its primary (the group).
            allowed = known if field == "optional" else known | primaries
            if field != "processors" and name not in allowed:
                problems.append(
                    f"{at}: {name!r} is not one of this phase's processors"
                    f"{_group_hint(spec, name, field)}; add it to {where}.processors or remove "
                    f"it from {field}"
                )
    for position, name in enumerate(spec.optional):
        if name in spec.critical:
            problems.append(
                f"{where}.optional[{position}]: {name!r} is critical, so it cannot be optional"
            )
    if spec.gated and not spec.required:
        problems.append(f"{where}.optional: every processor is optional; nothing would be awaited")
    return problems


def _group_hint(spec: PhaseSpec, name: str, field: str) -> str:
    group = spec.group_of(name)
    if group is None:
        return ""
    if field == "optional":
        return " (a fallback group member cannot be optional)"
    return f" (it is a fallback in any_of; name the group by its primary {group[0]!r})"


def _check_groups(where: str, spec: PhaseSpec) -> list[str]:
    """A name belongs to at most one group and never to a group and ``processors`` both."""
    problems: list[str] = []
    group_at: dict[str, int] = {}
    listed = set(spec.processors)
    for index, group in enumerate(spec.any_of):
        if len(group) < 2:  # a primary and at least one fallback
            problems.append(
                f"{where}.any_of[{index}]: a fallback group needs at least two processors "
                f"(got {list(group)!r}); move a lone name to {where}.processors"
            )
        for position, name in enumerate(group):
            at = f"{where}.any_of[{index}][{position}]"
            if name in listed:
                problems.append(
                    f"{at}: {name!r} is also in {where}.processors; a processor is either "
                    f"awaited on its own or a member of a fallback group: remove it from one"
                )
            other = group_at.get(name)
            if other is not None:
                what = "twice in this group" if other == index else f"also in any_of[{other}]"
                problems.append(
                    f"{at}: {name!r} is {what}; a processor belongs to one fallback group "
                    "only: remove it from all but one"
                )
            group_at.setdefault(name, index)
    return problems


def _check_deadlines(index: int, spec: PhaseSpec) -> list[str]:
    problems: list[str] = []
    where = f"phases[{index}]"
    waited_for = len(spec.required)
    for position, tier in enumerate(spec.tiers):
        at = f"{where}.tiers[{position}]"
        if position and tier.after <= spec.tiers[position - 1].after:
            problems.append(
                f"{at}.after: {format_duration(tier.after)} is not later than the previous "
                f"tier's {format_duration(spec.tiers[position - 1].after)}; tiers must be in "
                "increasing order"
            )
        if tier.min_complete > waited_for:
            problems.append(
                f"{at}.min_complete: {tier.min_complete} is more than the {waited_for} "
                "processors this phase waits for, so the tier can never be met; lower it to "
                f"at most {waited_for}"
            )
    if spec.max_wait is not None and spec.tiers and spec.max_wait <= spec.tiers[-1].after:
        problems.append(
            f"{where}.max_wait: {format_duration(spec.max_wait)} is not later than the last "
            f"tier ({format_duration(spec.tiers[-1].after)})"
        )
    return problems


def _named(spec: PhaseSpec) -> list[tuple[str, str, str]]:
    """(field, name, position) of every processor name the phase declares."""
    named = [("processors", name, f"[{position}]") for position, name in enumerate(spec.processors)]
    for index, group in enumerate(spec.any_of):
        named += [("any_of", name, f"[{index}][{position}]") for position, name in enumerate(group)]
    return named


def structure_problems(registry: Registry) -> list[str]:
    """Rules that span fields: membership, uniqueness, tier order."""
    problems: list[str] = []
    if not registry.phases:
        problems.append("phases: the registry declares no [[phases]]")
    phase_at: dict[int, int] = {}
    processor_at: dict[str, int] = {}
    for index, spec in enumerate(registry.phases):
        if spec.phase in phase_at:
            problems.append(
                f"phases[{index}].phase: phase {spec.phase} is already declared "
                f"by phases[{phase_at[spec.phase]}]"
            )
        phase_at.setdefault(spec.phase, index)
        for field, name, at in _named(spec):
            other = processor_at.get(name)
            if other is not None and other != index:
                problems.append(
                    f"phases[{index}].{field}{at}: {name!r} already belongs to "
                    f"phases[{other}] (phase {registry.phases[other].phase})"
                )
            processor_at.setdefault(name, index)
        problems += _check_members(index, spec)
        problems += _check_deadlines(index, spec)
    slowdown = registry.slowdown
    if slowdown.min_samples > slowdown.window:
        problems.append(
            f"slowdown.min_samples: {slowdown.min_samples} is more than the window of "
            f"{slowdown.window} durations kept"
        )
    system_at: dict[str, int] = {}
    for index, system in enumerate(registry.systems):
        if system.system_id in system_at:
            problems.append(
                f"systems[{index}].system_id: {system.system_id!r} is already declared "
                f"by systems[{system_at[system.system_id]}]"
            )
        system_at.setdefault(system.system_id, index)
    return problems
