"""The status summary behind ``GET /`` (HTML), ``GET /status`` (JSON) and ``phaseflow status``.

The worker builds it from its readiness table, lag monitor, dead-letter tracker and alert feed
(:func:`build_summary`, a JSON-able dict); ``phaseflow status`` and the page read it back as a
:class:`StatusSummary`, which ignores fields it does not know, so the endpoint may grow.
:func:`phase_condition` puts where a phase stands into words, the same for both renderers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, JsonValue

from phaseflow.models.events import Alert, DeadLetter
from phaseflow.streams.dlq_letters import format_age

#: Game dates the page shows when none is asked for: the latest ones in the readiness table.
RECENT_DATES = 3


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PhaseSummary(_Model):
    """One phase of one date, as ``GET /status/{game_date}`` reports it."""

    phase: int
    name: str
    expected: list[str]
    done: list[str]
    missing: list[str]
    processors: dict[str, str] = {}
    #: Fallback groups met by a member other than their primary: primary -> that member.
    satisfied_by: dict[str, str] = {}
    first_completion_at: datetime | None = None
    deadline: datetime | None = None
    trigger: dict[str, JsonValue] | None = None
    #: Why the validation gate rejected the phase's latest completion (None: it did not).
    rejected: str | None = None
    #: The earlier phase that has to fire first (phase order); None when not held.
    held_by_phase: int | None = None
    #: When its phase_stalled alert was raised.
    stalled_at: datetime | None = None

    @property
    def done_count(self) -> int:
        """Expected processors done; a fallback group counts once, however many members ran."""
        return len(self.expected) - len(self.missing)


class DateSummary(_Model):
    game_date: date
    phases: list[PhaseSummary]


class LagPoint(_Model):
    at: datetime
    lag: int


class GroupLag(_Model):
    group: str
    status: str
    #: None while the group has no committed offsets.
    lag: int | None
    history: list[LagPoint]


class LetterLine(_Model):
    failed_at: datetime
    source_topic: str
    error_type: str
    error: str


class DeadLetterSummary(_Model):
    unreplayed: int
    failed_again: int = 0
    oldest_age_seconds: float | None
    recent: list[LetterLine]


class AlertLine(_Model):
    kind: str
    severity: str
    subject: str
    message: str
    raised_at: datetime


class SinkHealth(_Model):
    """One BigQuery sink of the worker (sinks/install.py ``health()``)."""

    running: bool
    buffered: int
    #: Why it cannot start or write (the retried error while it starts), or None.
    problem: str | None = None


class StatusSummary(_Model):
    """Everything the status page shows; a section is None when this worker lacks its feature."""

    generated_at: datetime
    today: date
    dates: list[DateSummary]
    lag: list[GroupLag] | None
    dead_letters: DeadLetterSummary | None
    alerts: list[AlertLine] | None
    #: Identity and guarantee of the worker (GET /status only; absent from older workers).
    deployment: dict[str, Any] | None = None
    #: The worker's BigQuery sinks by name ({} when none is enabled; None from older workers).
    sinks: dict[str, SinkHealth] | None = None


# --- where a phase stands ------------------------------------------------------------------

PhaseState = Literal[
    "triggered", "rejected", "done", "waiting", "failed", "not_started", "nothing_expected"
]


@dataclass(frozen=True)
class PhaseCondition:
    state: PhaseState
    headline: str
    #: "deadline in 1h20m" / "deadline passed 5m ago"; None when no deadline applies.
    deadline: str | None


def _blocked_condition(phase: PhaseSummary) -> PhaseCondition | None:
    """Not triggered for a reason other than missing processors: the validation gate rejected
    it, or phase order holds it behind an earlier phase."""
    if phase.rejected is not None:
        headline = f"rejected by the validation gate: {phase.rejected}"
        return PhaseCondition("rejected", headline, None)
    if phase.held_by_phase is not None:
        headline = (
            f"held until phase {phase.held_by_phase} fires "
            f"({phase.done_count}/{len(phase.expected)} done)"
        )
        if phase.stalled_at is not None:
            headline += "; stalled"
        return PhaseCondition("waiting", headline, None)
    return None


def phase_condition(phase: PhaseSummary, now: datetime) -> PhaseCondition:
    """Triggered, rejected by the validation gate, done, waiting on whom (failed if one of them
    failed), or not started."""
    if phase.trigger is not None:
        reason = phase.trigger.get("reason", "?")
        headline = f"triggered phase {phase.phase + 1} ({reason})"
        if phase.missing:
            headline += f" without {', '.join(phase.missing)}"
        headline += _fallback_note(phase)
        upstream = phase.trigger.get("upstream")
        if isinstance(upstream, dict):
            # What the started phase runs on, when it is not a plain chain of ready triggers.
            unusual = [f"{n} {how}" for n, how in sorted(upstream.items()) if how != "ready"]
            if unusual:
                headline += f"; upstream: {', '.join(unusual)}"
        return PhaseCondition("triggered", headline, None)
    blocked = _blocked_condition(phase)
    if blocked is not None:
        return blocked
    if not phase.expected:
        return PhaseCondition("nothing_expected", "no processors expected", None)
    if not phase.missing:
        headline = f"done ({phase.done_count}/{len(phase.expected)}){_fallback_note(phase)}"
        return PhaseCondition("done", headline, None)
    if not phase.processors:
        return PhaseCondition("not_started", f"not started ({len(phase.expected)} expected)", None)
    failed = [name for name in phase.missing if phase.processors.get(name) == "failed"]
    headline = f"waiting on {', '.join(phase.missing)}"
    if failed:
        headline += f" (failed: {', '.join(failed)})"
    headline += _fallback_note(phase)
    if phase.stalled_at is not None:
        headline += "; stalled"
    return PhaseCondition(
        "failed" if failed else "waiting", headline, deadline_text(phase.deadline, now)
    )


def _fallback_note(phase: PhaseSummary) -> str:
    """Which fallback sources stood in for their primaries (registry ``any_of``)."""
    notes = [f"{primary} satisfied by {member}" for primary, member in phase.satisfied_by.items()]
    return f"; {', '.join(notes)}" if notes else ""


def deadline_text(deadline: datetime | None, now: datetime) -> str | None:
    if deadline is None:
        return None
    if deadline >= now:
        return f"deadline in {format_age(deadline - now)}"
    return f"deadline passed {format_age(now - deadline)} ago"


# --- building it in the worker ---------------------------------------------------------------


class LagHistorySource(Protocol):
    """What the summary reads from :class:`phaseflow.streams.monitoring.lag.LagMonitor`."""

    groups: list[str]

    def history(self) -> list[tuple[datetime, dict[str, int]]]: ...

    def group_status(self, group: str) -> Any: ...


class DeadLetterSource(Protocol):
    """What the summary reads from :class:`phaseflow.streams.dlq_tracker.DeadLetterTracker`."""

    @property
    def unreplayed(self) -> int: ...

    @property
    def failed_again(self) -> int: ...

    def oldest_age(self, now: datetime) -> timedelta | None: ...

    def recent(self) -> list[DeadLetter]: ...


class AlertSource(Protocol):
    """What the summary reads from
    :class:`phaseflow.streams.monitoring.recent_alerts.RecentAlerts`."""

    def recent(self, now: datetime) -> list[Alert]: ...


def recent_game_dates(dates: Iterable[date], limit: int = RECENT_DATES) -> list[date]:
    """The latest ``limit`` distinct game dates of ``dates``."""
    return sorted(set(dates), reverse=True)[:limit]


def build_summary(
    *,
    now: datetime,
    today: date,
    dates: Iterable[date],
    phases_of: Callable[[date], list[dict[str, Any]]],
    lag: LagHistorySource | None,
    letters: DeadLetterSource | None,
    alerts: AlertSource | None,
    recent_letters: int = 5,
    recent_alerts: int = 10,
) -> dict[str, Any]:
    """The ``GET /status`` body. Phases are passed through as ``phases_of`` returns them."""
    return {
        "generated_at": now.isoformat(),
        "today": today.isoformat(),
        "dates": [{"game_date": day.isoformat(), "phases": phases_of(day)} for day in dates],
        "lag": None if lag is None else _lag_section(lag),
        "dead_letters": None if letters is None else _letters_section(letters, now, recent_letters),
        "alerts": None
        if alerts is None
        else [_alert_line(alert) for alert in alerts.recent(now)[:recent_alerts]],
    }


def _lag_section(lag: LagHistorySource) -> list[dict[str, Any]]:
    history = lag.history()
    latest: Mapping[str, int] = history[-1][1] if history else {}
    return [
        {
            "group": group,
            "status": str(lag.group_status(group)),
            "lag": latest.get(group),
            "history": [
                {"at": at.isoformat(), "lag": totals[group]}
                for at, totals in history
                if group in totals
            ],
        }
        for group in lag.groups
    ]


def _letters_section(letters: DeadLetterSource, now: datetime, limit: int) -> dict[str, Any]:
    age = letters.oldest_age(now)
    return {
        "unreplayed": letters.unreplayed,
        "failed_again": letters.failed_again,
        "oldest_age_seconds": None if age is None else age.total_seconds(),
        "recent": [
            {
                "failed_at": letter.failed_at.isoformat(),
                "source_topic": letter.source_topic,
                "error_type": letter.error_type,
                "error": letter.error,
            }
            for letter in letters.recent()[:limit]
        ],
    }


def _alert_line(alert: Alert) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "severity": alert.severity,
        "subject": alert.subject,
        "message": alert.message,
        "raised_at": alert.raised_at.isoformat(),
    }
