"""Faust's table manager starts its tables at once, not after a fixed 1 s sleep.

faust-streaming 0.15's ``TableManager.on_start`` sleeps 1 s before it registers the tables'
changelog channels and starts recovery, and the consumer does not join its group before the
tables are registered: every worker start waited that second (seen in the chaos suite's kill -9
restart). phaseflow declares all its tables while it builds the app, before anything starts
(streams/app.py), so there is nothing to wait for.
"""

from __future__ import annotations

from typing import Any

from faust.tables.manager import TableManager


async def _start_without_sleep(self: Any) -> None:
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


def start_tables_at_once() -> None:
    """Replace the table manager's start with one that does not sleep first (idempotent)."""
    manager_class: Any = TableManager
    manager_class.on_start = _start_without_sleep
