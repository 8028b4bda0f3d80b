"""Records on the internal ``{prefix}.prediction-progress`` topic, keyed by ``game_date``.

Every change to a date's prediction batch goes through this one topic, so one agent applies them
in order, on the partition that owns the date's table entries:

* ``start`` / ``complete``: from the HTTP API, the CLI, a phase-5 trigger or a rerun request;
* ``check``: from the coordinator's timer (is a stalled batch done?);
* ``done``: from a worker, one per player predicted (how many predictions it produced).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, Strict

from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.fields import ID_NAMESPACE, GameDate, Identifier, Text, Timestamp

CommandKind = Literal["start", "complete", "check"]
#: Where a start came from (shown in the batch state and the completion's metadata).
CommandSource = Literal["trigger", "rerun", "api", "cli", "timer", "test"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CoordinatorCommand(_Record):
    """Start or complete a date's batch, or look at it now (timer)."""

    kind: CommandKind
    command_id: Text
    game_date: GameDate
    batch_id: Text | None = None
    source: CommandSource = "api"
    requested_by: Text = "phaseflow"
    issued_at: Timestamp

    @property
    def key(self) -> str:
        return self.game_date.isoformat()


class PlayerDone(_Record):
    """A worker finished one player's request of a batch."""

    kind: Literal["done"] = "done"
    game_date: GameDate
    batch_id: Text
    player_lookup: Identifier
    request_id: Text
    predictions: Annotated[int, Strict(), Field(ge=0)]
    done_at: Timestamp

    @property
    def key(self) -> str:
        return self.game_date.isoformat()


ProgressRecord = CoordinatorCommand | PlayerDone

_KINDS: Final = {"start", "complete", "check", "done"}


def stable_id(*parts: object) -> str:
    """A deterministic id (uuid5 in phaseflow's namespace): a retry yields the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(("coordinator", *map(str, parts)))))


def decode_progress(raw: bytes, *, max_bytes: int | None = None) -> ProgressRecord:
    """Parse one progress-topic record; raises only :class:`EventDecodeError`."""
    try:
        kind = orjson.loads(raw).get("kind") if raw else None
    except (orjson.JSONDecodeError, AttributeError):
        kind = None  # decode() below names the problem precisely
    if kind == "done":
        return decode(PlayerDone, raw, max_bytes=max_bytes)
    if kind in _KINDS:
        return decode(CoordinatorCommand, raw, max_bytes=max_bytes)
    if kind is None:
        # Let the codec report not-JSON / not-an-object; a JSON object without kind lands here.
        decode(PlayerDone, raw, max_bytes=max_bytes)
    raise EventDecodeError(
        f"kind: expected one of {', '.join(sorted(_KINDS))} (got {kind!r})", "invalid_field"
    )


def make_command(
    kind: CommandKind,
    game_date: date,
    *,
    issued_at: datetime,
    batch_id: str | None = None,
    source: CommandSource = "api",
    requested_by: str = "phaseflow",
    command: str | None = None,
) -> CoordinatorCommand:
    """A command with a fresh id unless ``command`` (a deterministic id) is given."""
    return CoordinatorCommand(
        kind=kind,
        command_id=command or str(uuid.uuid4()),
        game_date=game_date,
        batch_id=batch_id,
        source=source,
        requested_by=requested_by,
        issued_at=issued_at,
    )
