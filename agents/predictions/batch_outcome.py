"""The messages a prediction batch ends with: its one phase-5 PhaseCompletion, the failed
completion of a start whose slate could not be read, and the alert of a batch stalled below its
minimum coverage.

Pure builders (the coordinator sends what they return); the completion's fields are the
contract the readiness agent and ``phaseflow predict --wait`` read (docs/predictions.md).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from phaseflow.agents.predictions.batch_state import PHASE, PROCESSOR, BatchState
from phaseflow.agents.predictions.messages import stable_id
from phaseflow.models.events import Alert, PhaseCompletion


def batch_completion(
    game_date: date, done: BatchState, reason: str, failure: str | None, now: datetime
) -> PhaseCompletion:
    """The batch's phase-5 completion: ``success`` with every player, ``partial`` with fewer,
    ``failed`` (``error_type`` = ``reason``) when ``failure`` says why it produced nothing."""
    if failure is not None:
        status = "failed"
    elif done.completed_players >= done.expected_players:
        status = "success"
    else:
        status = "partial"
    return PhaseCompletion.model_validate(
        {
            "processor_name": PROCESSOR,
            "game_date": game_date,
            "phase": PHASE,
            "status": status,
            "record_count": done.total_predictions,
            "execution_id": stable_id("prediction-batch-complete", done.batch_id),
            "correlation_id": done.batch_id,
            "timestamp": now,
            "duration_seconds": max(0.0, (now - done.started_at).total_seconds()),
            "error_message": None if failure is None else failure[:1000],
            "error_type": None if failure is None else reason,
            "metadata": {
                "expected_players": done.expected_players,
                "completed_players": done.completed_players,
                "total_predictions": done.total_predictions,
                "batch_id": done.batch_id,
                "completion_reason": reason,
                "coverage_pct": round(done.coverage_pct, 2),
            },
        }
    )


def source_failure(
    game_date: date, batch_id: str, command_id: str, error: str, now: datetime
) -> PhaseCompletion:
    """The slate could not be read: a failed completion (the readiness agent reruns it)."""
    return PhaseCompletion.model_validate(
        {
            "processor_name": PROCESSOR,
            "game_date": game_date,
            "phase": PHASE,
            "status": "failed",
            "record_count": 0,
            "execution_id": stable_id("prediction-batch-failed", batch_id, command_id),
            "correlation_id": batch_id,
            "timestamp": now,
            "error_message": error[:1000],
            "error_type": "source_unavailable",
            "metadata": {"batch_id": batch_id},
        }
    )


def stall_alert(
    batch: BatchState,
    game_date: date,
    now: datetime,
    *,
    stall_timeout: timedelta,
    min_coverage_pct: float,
) -> Alert:
    """No progress for ``stall_timeout`` below the minimum coverage: the batch waits."""
    return Alert.model_validate(
        {
            "kind": "phase_timeout",
            "severity": "warning",
            "subject": f"{game_date.isoformat()}:phase_{PHASE}",
            "message": (
                f"prediction batch {batch.batch_id} made no progress for "
                f"{stall_timeout} at {batch.coverage_pct:.1f}% of players "
                f"(< {min_coverage_pct:g}%); waiting, or POST /coordinator/complete"
            ),
            "details": {
                "batch_id": batch.batch_id,
                "expected_players": batch.expected_players,
                "completed_players": batch.completed_players,
            },
            "raised_at": now,
        }
    )
