"""A small async client for processors: publish PhaseCompletion events.

Retried publishes never double-count: every completion carries an ``execution_id`` and the
readiness agent drops ids it has seen. Where the broker supports it (Apache Kafka) the producer
is also idempotent, so the broker itself drops retried batches.
"""

from __future__ import annotations

import asyncio
import difflib
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from models.codec import encode
from models.events import PhaseCompletion
from streams.cli_errors import BadInputError
from streams.lifecycle import AsyncService
from streams.reachability import require_broker
from streams.registry import Registry, load_registry
from streams.settings import Settings
from streams.topics import TopicName


class CompletionPublisher(AsyncService):
    """Publishes completions to ``{prefix}.phase-completions``, keyed by game date."""

    def __init__(
        self, settings: Settings, *, idempotent: bool | None = None, **producer_options: Any
    ) -> None:
        self._settings = settings
        self._topic = settings.topic(TopicName.PHASE_COMPLETIONS)
        idempotent = settings.idempotent_producer if idempotent is None else idempotent
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            **producer_options,
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            try:
                await self._producer.start()
            except BaseException:
                # A producer whose start failed still holds its client; closing it here keeps
                # the failure to the caller's one error instead of an "Unclosed" report at exit.
                await self._producer.stop()
                raise
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, completion: PhaseCompletion) -> None:
        """Send one completion and wait until the broker acknowledged it."""
        await self._producer.send_and_wait(
            self._topic, value=encode(completion), key=completion.key.encode("utf-8")
        )

    async def publish_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (tests and replays of dead letters)."""
        await self._producer.send_and_wait(self._topic, value=value, key=key)


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
