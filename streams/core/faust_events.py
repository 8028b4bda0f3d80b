"""Which Faust event the code running now handles (``faust.current_event()``), set by hand.

Faust takes the partition of a table write (its changelog record) and, in phaseflow, of a
transactional output (``FaustPublisher``) from the current event. A stream read with
``take_events`` is consumed by a background task, so the agent's own task has no current
event of its own: an agent handling a batch sets it for each event it handles, and a
``WriteBackTable`` sets it again for each key it stores at the end of the batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust import streams as faust_streams


def current_event() -> Any:
    """The Faust event being handled in this task, or None."""
    return faust.current_event()


@contextmanager
def handling(event: Any) -> Iterator[None]:
    """Make ``event`` the current event until the block ends (None: leave it as it is)."""
    if event is None:
        yield
        return
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
