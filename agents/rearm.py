"""Reruns flow down: a rerun of phase N after it fired fires phase N + 1 again, on fresh output.

- A *rerun completion* is a done completion from a processor that was already done when the
  phase fired (it had counted). A processor that was still missing then and reports late is a
  straggler, not a rerun: it fires nothing.
- A rerun completion schedules a re-fire ``[rerun] backoff`` later; every further rerun
  completion of the phase pushes it out again, so a whole phase rerun (five processors reporting
  one after another) fires the next phase once, after the last of them.
- The re-fire is a ``rerun`` trigger with its own id (the round is the nonce). It re-arms the
  started phase: that phase's earlier trigger goes to its history and its completions are
  forgotten (dedup ids are kept), so it fires *its* next phase again only once its processors
  have reported on the fresh input, and its deadlines and stall alert count from the re-fire.
  A re-armed phase firing (a repeat round) re-arms its own next phase the same way, so one
  rerun at the top flows through every later phase, each on its predecessor's fresh output.

Pure functions of states and times; the readiness processor calls them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from phaseflow.agents.readiness_state import DONE_STATUSES

if TYPE_CHECKING:
    from phaseflow.agents.readiness_state import PhaseState
    from phaseflow.models.events import PhaseCompletion


def is_rerun_completion(before: PhaseState, completion: PhaseCompletion) -> bool:
    """``completion`` re-reports a processor that had counted when ``before`` fired.

    Judged by the trigger's ``completed`` list (no clock involved); a ledger written before
    that list was kept falls back to "done before the trigger" by the completion timestamps.
    """
    trigger = before.trigger
    if trigger is None or not completion.is_done:
        return False
    previous = before.processors.get(completion.processor_name)
    if previous is None or previous.status not in DONE_STATUSES:
        return False
    if trigger.completed:
        return completion.processor_name in trigger.completed
    return previous.first_completed_at <= trigger.triggered_at


def with_refire_scheduled(state: PhaseState, now: datetime, settle: timedelta) -> PhaseState:
    """Re-fire ``settle`` after this (the latest) rerun completion."""
    return state.model_copy(update={"refire_due_at": now + settle})


def refire_due(state: PhaseState, now: datetime) -> bool:
    return state.refire_due_at is not None and state.refire_due_at <= now


def rearmed(state: PhaseState, started_at: datetime) -> PhaseState:
    """The started phase after its predecessor re-fired: a fresh round on fresh input."""
    history = state.previous_triggers + ((state.trigger,) if state.trigger is not None else ())
    return state.model_copy(
        update={
            "processors": {},
            "first_completion_at": None,
            "last_completion_at": None,
            "started_at": started_at,
            "trigger": None,
            "previous_triggers": history,
            "deadline_at": None,
            "deadline_handled": False,
            "reruns": {},
            "gate_rejected_id": None,
            "stall_alerted_at": None,
            "refire_due_at": None,
            "round": state.round + 1,
        }
    )
