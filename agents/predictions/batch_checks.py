"""The prediction coordinator's timer: which dates to ``check`` now, and expiry of old dates.

A date is due when its running batch has been idle for ``stall_timeout`` (and was not alerted
for that idleness yet) or has reached its deadline, or when a date without a running batch is
older than the retention. The ``check`` goes through the progress topic to the worker that owns
the date, where the coordinator applies it; a check is not sent again while an earlier one may
still be in flight (``CHECK_RESEND_AFTER``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import date, datetime, timedelta
from typing import Any, Final

from phaseflow.agents.predictions.batch_state import DateState, batch_ends_at
from phaseflow.agents.predictions.messages import CoordinatorCommand, make_command
from phaseflow.streams.core.clock import Clock

#: A check for a date is not re-sent while an earlier one may still be in flight.
CHECK_RESEND_AFTER: Final = timedelta(seconds=5)


class BatchChecks:
    """Due checks of the dates in the batch tables, and their expiry."""

    def __init__(
        self,
        *,
        batches: MutableMapping[str, Any],
        players: MutableMapping[str, Any],
        clock: Clock,
        retention: timedelta,
        stall_timeout: timedelta,
        batch_deadline: timedelta,
    ) -> None:
        self._batches = batches
        self._players = players
        self._clock = clock
        self.retention = retention
        self.stall_timeout = stall_timeout
        self.batch_deadline = batch_deadline
        self._checks_sent: dict[date, datetime] = {}

    def received(self, game_date: date) -> None:
        """A check of ``game_date`` is being applied: the next one may go out."""
        self._checks_sent.pop(game_date, None)

    def expired(self, game_date: date, now: datetime) -> bool:
        return game_date < now.date() - self.retention

    def expire(self, state: DateState) -> None:
        # Markers are keyed {date}|{batch}|{player}; {batch}|{player} ones were written before
        # the date was part of the key and are dropped with their date too.
        prefixes = (
            f"{state.game_date.isoformat()}|",
            *(f"{batch_id}|" for batch_id in state.completed),
        )
        for key in [k for k in list(self._players.keys()) if str(k).startswith(prefixes)]:
            del self._players[key]
        del self._batches[state.game_date.isoformat()]

    def due(self, states: Iterable[DateState]) -> list[date]:
        """Dates whose batch may have stalled (or whose state expired): look at them now."""
        now = self._clock.now()
        due: list[date] = []
        for state in states:
            sent = self._checks_sent.get(state.game_date)
            if sent is not None and now - sent < CHECK_RESEND_AFTER:
                continue
            running = state.running
            if running is None:
                if self.expired(state.game_date, now):
                    due.append(state.game_date)
                continue
            idle = now - running.last_progress_at >= self.stall_timeout
            alerted = (
                running.stalled_at is not None and running.stalled_at >= running.last_progress_at
            )
            if (idle and not alerted) or now >= batch_ends_at(running, self.batch_deadline):
                due.append(state.game_date)
        return due

    async def send_due(
        self,
        states: Iterable[DateState],
        send: Callable[[CoordinatorCommand], Awaitable[None]],
    ) -> int:
        """The timer's job: a ``check`` to the partition that owns each due date."""
        dates = self.due(states)
        now = self._clock.now()
        for game_date in dates:
            command = make_command("check", game_date, issued_at=now, source="timer")
            await send(command)
            self._checks_sent[game_date] = now
        return len(dates)
