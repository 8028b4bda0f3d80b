"""What ``phaseflow predict --wait`` prints for a batch's phase-5 completion, and its exit code."""

from __future__ import annotations

from phaseflow.agents.predictions.commands import describe_completion
from phaseflow.agents.predictions.coordinator import Coordinator
from phaseflow.agents.predictions.messages import make_command
from phaseflow.models.codec import decode
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.topics import TopicName
from tests.fixtures.prediction_fakes import DAY, T0, FakeSlate, ListPublisher, slate


async def completion_of_a_start(players: int) -> PhaseCompletion:
    """The completion the coordinator publishes when a start over ``players`` ends at once."""
    publisher = ListPublisher()
    coordinator = Coordinator(
        registry=load_registry(None),
        batches={},
        players={},
        publisher=publisher,
        source=FakeSlate(slate(players)),
        clock=ManualClock(T0),
    )
    await coordinator.apply(make_command("start", DAY, issued_at=T0))
    [(_, value)] = publisher.on(TopicName.PHASE_COMPLETIONS)
    return decode(PhaseCompletion, value)


async def test_a_batch_over_an_empty_slate_exits_1_and_says_why() -> None:
    line, code = describe_completion(await completion_of_a_start(players=0))
    assert code == 1
    assert line.startswith("phase 5 of 2026-01-15 failed: batch 2026-01-15-r1, 0/0 players")
    assert "no_slate: no players on the slate of 2026-01-15" in line


def test_success_and_partial_exit_0_with_players_and_predictions() -> None:
    for status in ("success", "partial"):
        completion = PhaseCompletion(
            processor_name="prediction_coordinator",
            game_date=DAY,
            phase=5,
            status=status,
            timestamp=T0,
            record_count=40,
            metadata={"batch_id": "b", "expected_players": 10, "completed_players": 10},
        )
        assert describe_completion(completion) == (
            f"phase 5 of 2026-01-15 {status}: batch b, 10/10 players, 40 predictions",
            0,
        )


def test_a_source_failure_exits_1_with_the_error() -> None:
    completion = PhaseCompletion(
        processor_name="prediction_coordinator",
        game_date=DAY,
        phase=5,
        status="failed",
        timestamp=T0,
        error_type="source_unavailable",
        error_message="emulator down",
        metadata={"batch_id": "b"},
    )
    assert describe_completion(completion) == (
        "phase 5 of 2026-01-15 failed: batch b, 0 predictions; source_unavailable: emulator down",
        1,
    )
