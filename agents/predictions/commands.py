"""``phaseflow predict --date D``: ask the running workers' coordinator to start a batch."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from aiokafka import AIOKafkaConsumer

from phaseflow.agents.predictions.batch_state import PROCESSOR
from phaseflow.agents.predictions.messages import make_command
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, committed_reader


def describe_completion(completion: PhaseCompletion) -> tuple[str, int]:
    """The line ``predict --wait`` prints for the batch's phase-5 completion, and its exit code:
    0 for success or partial, 1 for anything else (a batch that produced nothing is failed)."""
    meta = completion.metadata
    line = f"phase 5 of {completion.game_date} {completion.status}: batch {meta.get('batch_id')}, "
    if "expected_players" in meta:
        line += f"{meta.get('completed_players')}/{meta['expected_players']} players, "
    line += f"{completion.record_count} predictions"
    if completion.status in ("success", "partial"):
        return line, 0
    reason = completion.error_type or "unknown"
    return f"{line}; {reason}: {completion.error_message or 'no message'}", 1


async def predict_from_cli(
    settings: Settings, *, game_date: str, batch_id: str | None, wait_seconds: float
) -> int:
    """Send a ``start`` command; with ``wait_seconds`` > 0, wait for the phase-5 completion
    (exit 1 when it is not success/partial, or does not come)."""
    day = date.fromisoformat(game_date)
    command = make_command(
        "start",
        day,
        issued_at=datetime.now(UTC),
        batch_id=batch_id,
        source="cli",
        requested_by="cli",
    )
    consumer: AIOKafkaConsumer | None = None
    if wait_seconds > 0:
        # Subscribe first (at the end of the topic), so a fast completion is not missed.
        consumer = await kafka_clients.started(
            committed_reader(settings, TopicName.PHASE_COMPLETIONS, offset_reset="latest")
        )
        await consumer.seek_to_end()
    try:
        async with SideProducer(settings) as producer:
            await producer.send(TopicName.PREDICTION_PROGRESS, command.key, encode(command))
        print(f"requested a prediction batch for {day} (command {command.command_id})")  # noqa: T201
        if consumer is None:
            print(  # noqa: T201
                f"not waiting for the outcome (--wait SECONDS waits for it; "
                f"phaseflow status --date {day} shows it)"
            )
            return 0
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        completion = decode(PhaseCompletion, record.value or b"")
                    except EventDecodeError:
                        continue
                    if completion.processor_name == PROCESSOR and completion.game_date == day:
                        line, code = describe_completion(completion)
                        print(line)  # noqa: T201
                        return code
        print(  # noqa: T201
            f"no phase-5 completion for {day} within {wait_seconds:g} s "
            f"(a batch of the date may be running: phaseflow status --date {day})"
        )
        return 1
    finally:
        if consumer is not None:
            await consumer.stop()
