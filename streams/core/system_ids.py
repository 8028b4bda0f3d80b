"""The prediction system ids the registry's ``[[systems]]`` may name.

The registry format (ground floor) checks ids against this set; the systems themselves live in
``phaseflow.agents.predictions.systems``, above it, whose ``register_system`` adds a plugin's id
here too. The built-in ids are listed once more in that module's factory table; a unit test
keeps the two equal.
"""

from __future__ import annotations

from typing import Final

#: The systems that ship with phaseflow (docs/predictions.md).
BUILTIN_SYSTEM_IDS: Final = frozenset(
    {
        "moving_average_baseline_v1",
        "zone_matchup_v1",
        "similarity_balanced_v1",
        "recency_trend_v1",
        "ensemble_v1",
    }
)

_registered: set[str] = set()


def add_system_id(system_id: str) -> None:
    """Make a plugin's ``system_id`` acceptable to the registry."""
    _registered.add(system_id)


def known_system_ids() -> frozenset[str]:
    """The built-in ids and every id registered since the process started."""
    return BUILTIN_SYSTEM_IDS | _registered
