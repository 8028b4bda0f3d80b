"""``phaseflow publish``: check one completion from the command line, then send it with the
processors' client (phaseflow.streams.client, whose ``CompletionPublisher`` is re-exported here)."""

from __future__ import annotations

import asyncio
import difflib
import uuid
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError

from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.cli_errors import BadInputError
from phaseflow.streams.client import CompletionPublisher
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.reachability import require_broker

__all__ = [
    "CompletionPublisher",
    "completion_from_cli",
    "publish_from_cli",
    "registry_problem",
]


#: The ``phaseflow publish`` option that sets each PhaseCompletion field.
_OPTION_OF_FIELD: Final = {
    "processor_name": "--processor",
    "game_date": "--date",
    "phase": "--phase",
    "status": "--status",
    "record_count": "--records",
    "execution_id": "--execution-id",
}


def completion_from_cli(
    *,
    processor: str,
    game_date: str,
    phase: str,
    status: str,
    record_count: int,
    execution_id: str | None,
    now: datetime,
) -> PhaseCompletion:
    """The completion ``phaseflow publish`` sends; :class:`BadInputError` names the option."""
    try:
        return PhaseCompletion.model_validate(
            {
                "processor_name": processor,
                "game_date": game_date,
                "phase": int(phase) if phase.strip().isdigit() else phase,
                "status": status,
                "record_count": record_count,
                "execution_id": execution_id or str(uuid.uuid4()),
                "correlation_id": f"cli-{uuid.uuid4()}",
                "timestamp": now.isoformat(),
            }
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{_option(detail['loc'])}: {detail['msg']}" for detail in error.errors()
        )
        raise BadInputError(problems) from None


def _option(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "completion"
    return _OPTION_OF_FIELD.get(field, field)


def registry_problem(registry: Registry, processor: str, phase: int) -> str | None:
    """Why the readiness agent would dead-letter this processor/phase pair, or None if it fits.

    The agent rejects a phase the registry does not declare, a processor it does not know and a
    processor reported under another phase than its own (README "Bad input").
    """
    owner = registry.phase_for_processor(processor)
    if owner is None:
        known = [name for spec in registry.phases for name in spec.processors]
        close = difflib.get_close_matches(processor, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"--processor: {processor!r} is not a processor of the registry{hint}"
    if owner != phase:
        return (
            f"--phase: {processor!r} belongs to phase {owner} "
            f"({registry.phase(owner).name}), not phase {phase}; use --phase {owner}"
        )
    return None


async def publish_from_cli(
    settings: Settings,
    *,
    processor: str,
    game_date: str,
    phase: str,
    status: str,
    record_count: int,
    execution_id: str | None,
    check: bool = True,
    registry: Registry | None = None,
) -> int:
    """``phaseflow publish``: check the input (and against the registry), then send it.

    ``check=False`` (``--no-check``) skips the registry check, e.g. to test the dead-letter path.
    """
    completion = completion_from_cli(
        processor=processor,
        game_date=game_date,
        phase=phase,
        status=status,
        record_count=record_count,
        execution_id=execution_id,
        now=datetime.now(UTC),
    )
    if check:
        loaded = registry or load_registry(settings.registry_path)
        problem = registry_problem(loaded, completion.processor_name, completion.phase)
        if problem is not None:
            raise BadInputError(
                f"{problem} (the readiness agent would dead-letter it; --no-check sends it anyway)"
            )
    await asyncio.to_thread(require_broker, settings)
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(completion)
    print(f"published {completion.processor_name} {completion.game_date} {completion.status}")  # noqa: T201
    return 0
