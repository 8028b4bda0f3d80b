"""Are the worker's tables recovered for the partitions it owns now? (``GET /ready``)

Faust reports partitions as assigned, and serves HTTP, while it is still reading changelogs into
its tables; ``app.tables.recovery.in_recovery`` only covers the changelog reading itself (not
the flush and highwater requests before it, nor the table callbacks after it), and
``recovery.completed`` is set by the first recovery and never cleared. A worker answering from
half-restored tables reports dates as missing that it has seen, so readiness must wait for the
end of recovery of the *current* consumer generation.

Faust ends a recovery in one of two methods, each given the generation it recovered for:
``Recovery.on_recovery_completed`` (tables restored) and ``Recovery._resume_streams`` (no tables
to restore). :func:`record_finished_recoveries` wraps both (once per process, like
streams/faust_recovery.py) to remember that generation on the recovery object, if it is still
the consumer's when the method returns (otherwise Faust itself abandoned it: a newer rebalance),
and to call what :func:`when_tables_recovered` registered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Final

from faust.tables.recovery import Recovery

log = logging.getLogger(__name__)

#: Attribute on Faust's Recovery object: the consumer generation recovery last finished for.
_RECOVERED: Final = "_phaseflow_recovered_generation"
_WRAPPED: Final = "_phaseflow_records_generation"
#: Attribute on the Faust app: callbacks of :func:`when_tables_recovered`.
_LISTENERS: Final = "_phaseflow_on_tables_recovered"

RecoveryEnd = Callable[..., Awaitable[None]]


def recording(end: RecoveryEnd) -> RecoveryEnd:
    """``end`` (a Recovery method ending a recovery), then note the generation it finished."""

    @wraps(end)
    async def finished(self: Any, generation_id: int = 0) -> None:
        await end(self, generation_id=generation_id)
        if generation_id == self.app.consumer_generation_id:
            setattr(self, _RECOVERED, generation_id)
            log.info("tables recovered for consumer generation %d", generation_id)
            for listener in getattr(self.app, _LISTENERS, ()):
                try:
                    listener(generation_id)
                except Exception:  # a listener must not fail Faust's recovery
                    log.exception("a tables-recovered listener failed")

    setattr(finished, _WRAPPED, True)
    return finished


def is_recording(method: object) -> bool:
    """Whether ``method`` is already wrapped by :func:`recording`."""
    return bool(getattr(method, _WRAPPED, False))


def record_finished_recoveries() -> None:
    """Make Faust's Recovery remember which generation it finished for (idempotent)."""
    recovery_class: Any = Recovery
    for name in ("on_recovery_completed", "_resume_streams"):
        method = getattr(recovery_class, name)
        if not getattr(method, _WRAPPED, False):
            setattr(recovery_class, name, recording(method))


def when_tables_recovered(app: Any, listener: Callable[[int], None]) -> None:
    """Call ``listener(generation)`` each time ``app`` finished recovering its tables for its
    current assignment (the moment ``GET /ready`` stops naming recovery)."""
    record_finished_recoveries()
    listeners: list[Callable[[int], None]] | None = getattr(app, _LISTENERS, None)
    if listeners is None:
        listeners = []
        setattr(app, _LISTENERS, listeners)
    listeners.append(listener)


@dataclass(frozen=True)
class RecoveryState:
    """What readiness needs to know about table recovery, read from Faust in one go."""

    rebalancing: bool  # between partitions revoked and assigned
    requested: bool  # a rebalance asked for recovery and the recovery loop has not begun it
    restoring: bool  # reading changelogs into tables
    generation: int  # the consumer's current generation
    recovered_generation: int | None  # the generation recovery last finished for

    def pending(self) -> str | None:
        """Why the tables are not ready for the current assignment, or None when they are."""
        if self.rebalancing:
            return "rebalancing (partitions being reassigned, their tables not recovered yet)"
        if self.restoring:
            return "restoring tables from their changelogs"
        if self.requested or self.recovered_generation != self.generation:
            return "table recovery not finished for the current assignment"
        return None


def recovery_state(app: Any) -> RecoveryState:
    """The recovery state of a running Faust app (call from its event loop)."""
    recovery = app.tables.recovery
    return RecoveryState(
        rebalancing=bool(app.rebalancing),
        requested=recovery.signal_recovery_start.is_set(),
        restoring=bool(recovery.in_recovery),
        generation=app.consumer_generation_id,
        recovered_generation=getattr(recovery, _RECOVERED, None),
    )
