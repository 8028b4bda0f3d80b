"""The six pipeline phases: numbers, names and the spellings publishers use.

The contract side: docs/contract.md#phases.

Phases are plain ints 1-6 everywhere inside phaseflow. The production publishers send strings such
as ``"phase_3_analytics"``; :func:`parse_phase` is the one place that maps every accepted spelling
to the int, so no other module has to know them.
"""

from __future__ import annotations

from typing import Final

FIRST_PHASE: Final = 1
LAST_PHASE: Final = 6

#: Short names, as in docs/contract.md#phases and the registry's ``name`` field.
PHASE_NAMES: Final[dict[int, str]] = {
    1: "scrapers",
    2: "raw",
    3: "analytics",
    4: "precompute",
    5: "predictions",
    6: "export",
}


class UnknownPhaseError(ValueError):
    """A value that is not one of the six phases, in any accepted spelling."""


def phase_label(phase: int) -> str:
    """The production spelling of ``phase``, e.g. ``phase_label(3) == "phase_3_analytics"``."""
    if phase not in PHASE_NAMES:
        raise UnknownPhaseError(_unknown_message(phase))
    return f"phase_{phase}_{PHASE_NAMES[phase]}"


#: Every accepted string spelling (lower-cased) and its phase number.
_SPELLINGS: Final[dict[str, int]] = {
    spelling: number
    for number, name in PHASE_NAMES.items()
    for spelling in (f"phase_{number}_{name}", f"phase_{number}", str(number))
}

ALLOWED_TEXT: Final = "1-6 or " + ", ".join(phase_label(n) for n in PHASE_NAMES)


def _unknown_message(value: object) -> str:
    return f"unknown phase {value!r}; expected {ALLOWED_TEXT}"


def parse_phase(value: object) -> int:
    """Normalize any accepted spelling of a phase to its number.

    Accepted: the ints 1-6, and the strings ``"phase_3_analytics"``, ``"phase_3"`` and ``"3"``
    (case and surrounding blanks ignored). Booleans and floats are rejected even though Python
    treats ``True == 1``: a publisher sending them has a bug we want to see.
    """
    if isinstance(value, bool):
        raise UnknownPhaseError(_unknown_message(value))
    if isinstance(value, int):
        if FIRST_PHASE <= value <= LAST_PHASE:
            return value
        raise UnknownPhaseError(_unknown_message(value))
    if isinstance(value, str):
        number = _SPELLINGS.get(value.strip().lower())
        if number is not None:
            return number
    raise UnknownPhaseError(_unknown_message(value))
