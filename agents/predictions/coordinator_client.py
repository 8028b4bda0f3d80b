"""Request/reply to the prediction coordinator: send a command, wait for its result.

Every command goes through the progress topic, so the worker that owns the date's partition
applies it in order with everything else of that date (phaseflow.agents.predictions.coordinator).
When that worker is this one, the coordinator hands the result to ``resolve`` and the caller
(the HTTP API, ``POST /coordinator/start`` and ``/complete``) gets it; otherwise the caller gets
``submitted`` after the reply timeout, and the command is still applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, timedelta

from pydantic import JsonValue

from phaseflow.agents.predictions.batch_state import (
    BatchAlreadyRunningError,
    BatchNotRunningError,
    CommandResult,
    DateState,
    batch_ends_at,
)
from phaseflow.agents.predictions.messages import CommandSource, CoordinatorCommand, make_command
from phaseflow.streams.core.clock import Clock


class CoordinatorClient:
    """Submits commands to the progress topic and waits for this worker's answer."""

    def __init__(
        self,
        *,
        send: Callable[[CoordinatorCommand], Awaitable[None]],
        date_state: Callable[[date], DateState | None],
        clock: Clock,
        reply_timeout_seconds: float,
        batch_deadline: timedelta,
    ) -> None:
        self._send = send
        self._date_state = date_state
        self._clock = clock
        self._reply_timeout = reply_timeout_seconds
        self._batch_deadline = batch_deadline
        self._waiters: dict[str, asyncio.Future[CommandResult]] = {}

    def resolve(self, command_id: str, result: CommandResult) -> None:
        """The coordinator applied ``command_id``: answer whoever waits for it here."""
        waiter = self._waiters.get(command_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    async def submit(
        self, command: CoordinatorCommand, *, wait: float | None = None
    ) -> CommandResult | None:
        """Send ``command`` to the progress topic and wait for this worker to apply it.

        None when it was not applied within ``wait`` seconds (e.g. another worker owns the
        date's partition): it still will be.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[CommandResult] = loop.create_future()
        self._waiters[command.command_id] = waiter
        try:
            await self._send(command)
            timeout = self._reply_timeout if wait is None else wait
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                return None
        finally:
            self._waiters.pop(command.command_id, None)

    async def start(
        self,
        game_date: date,
        batch_id: str | None = None,
        requested_by: str = "api",
        *,
        source: CommandSource = "api",
    ) -> Mapping[str, JsonValue]:
        """Start a batch (``POST /coordinator/start``); a running one raises (HTTP 409)."""
        state = self._date_state(game_date)
        running = state.running if state is not None else None
        ends = batch_ends_at(running, self._batch_deadline) if running is not None else None
        if running is not None and ends is not None and self._clock.now() < ends:
            raise BatchAlreadyRunningError(
                f"already running: batch {running.batch_id} of {game_date} "
                f"({running.completed_players}/{running.expected_players} players done); "
                f"it ends by {ends.isoformat()} at the latest"
            )
        command = make_command(
            "start",
            game_date,
            issued_at=self._clock.now(),
            batch_id=batch_id,
            source=source,
            requested_by=requested_by,
        )
        result = await self.submit(command)
        if result is None:
            return {"status": "submitted", "game_date": game_date.isoformat(), "batch_id": batch_id}
        if result.status == "already_running":
            raise BatchAlreadyRunningError(f"already running: {result.message}")
        return result.as_json()

    async def complete(
        self, game_date: date, batch_id: str | None = None, requested_by: str = "api"
    ) -> Mapping[str, JsonValue]:
        """Finish the running batch now (``POST /coordinator/complete``); none raises (409)."""
        state = self._date_state(game_date)
        if state is None or state.current is None:
            raise BatchNotRunningError(f"no prediction batch for {game_date}")
        command = make_command(
            "complete",
            game_date,
            issued_at=self._clock.now(),
            batch_id=batch_id,
            requested_by=requested_by,
        )
        result = await self.submit(command)
        if result is None:
            return {"status": "submitted", "game_date": game_date.isoformat(), "batch_id": batch_id}
        if result.status == "not_running":
            raise BatchNotRunningError(
                f"no running prediction batch {batch_id or ''} for {game_date}"
            )
        return result.as_json()
