"""What ``phaseflow replay`` prints: the recorded day next to its offline replay.

Per (date, phase): when the phase was started on the log (its first ``ready``/``timeout``
trigger on the trigger topic) and when the replay under the new registry would start it, and
the delta; then the readiness processor's reruns and alerts that differ between what was sent
and what would be sent. Reruns are matched on (date, phase, processor, reason, attempt), alerts
on (kind, subject): the same decision at a slightly different moment is no difference. A
decision the replay takes after the log ends (the replay runs on past the last completion, to
its deadlines) has nothing on the log to compare with: it is listed apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, TypeVar

from phaseflow.agents.replay import ReplayOutcome
from phaseflow.models.events import Alert, PhaseTrigger, RerunRequest
from phaseflow.models.fields import ALERT_KINDS
from phaseflow.streams.text_table import aligned_rows

_T = TypeVar("_T")

#: Alerts of the readiness processor a replay decides too. Lag and dead-letter alerts come from
#: other parts of the worker; a slowdown alert depends on durations of earlier days, which a
#: replay of a few dates does not have.
COMPARED_ALERT_KINDS: Final = frozenset(ALERT_KINDS) - {"consumer_lag", "dlq", "processor_slowdown"}

#: The rerun requests the readiness processor sends (an operator's ``phaseflow rerun`` names
#: its actor instead, and is an input of the day, not a decision).
PROCESSOR_REQUESTER: Final = "phaseflow"


@dataclass(frozen=True)
class RecordedDecisions:
    """What the log says the worker sent for the replayed dates."""

    triggers: list[PhaseTrigger]
    reruns: list[RerunRequest]
    alerts: list[Alert]


@dataclass(frozen=True)
class PhaseStart:
    """One (date, phase): its first trigger on the log and in the replay (None: none)."""

    game_date: date
    phase: int
    fired: PhaseTrigger | None
    would_fire: PhaseTrigger | None

    @property
    def delta_seconds(self) -> float | None:
        if self.fired is None or self.would_fire is None:
            return None
        return (self.would_fire.triggered_at - self.fired.triggered_at).total_seconds()


@dataclass(frozen=True)
class Comparison:
    """The replay of some dates next to what the log recorded of them."""

    dates: tuple[date, ...]
    registry: str
    completions: int
    log_end: datetime
    replayed_until: datetime
    phases: tuple[PhaseStart, ...]
    reruns_sent: tuple[RerunRequest, ...]
    reruns_would_send: tuple[RerunRequest, ...]
    alerts_sent: tuple[Alert, ...]
    alerts_would_send: tuple[Alert, ...]
    #: What the replay decides after ``log_end``: nothing on the log to compare with yet.
    reruns_after_log: tuple[RerunRequest, ...]
    alerts_after_log: tuple[Alert, ...]
    dead_lettered: int

    @property
    def reruns_only_sent(self) -> list[RerunRequest]:
        return _only(self.reruns_sent, self.reruns_would_send, _rerun_key)

    @property
    def reruns_only_would_send(self) -> list[RerunRequest]:
        return _only(self.reruns_would_send, self.reruns_sent, _rerun_key)

    @property
    def alerts_only_sent(self) -> list[Alert]:
        return _only(self.alerts_sent, self.alerts_would_send, _alert_key)

    @property
    def alerts_only_would_send(self) -> list[Alert]:
        return _only(self.alerts_would_send, self.alerts_sent, _alert_key)


def _rerun_key(rerun: RerunRequest) -> tuple[Any, ...]:
    return (rerun.game_date, rerun.phase, rerun.processor_name, rerun.reason, rerun.attempt)


def _alert_key(alert: Alert) -> tuple[Any, ...]:
    return (alert.kind, alert.subject)


def _only(items: Sequence[_T], others: Sequence[_T], key: Callable[[_T], Any]) -> list[_T]:
    other_keys = {key(item) for item in others}
    return [item for item in items if key(item) not in other_keys]


def _on_dates(subject: str, dates: tuple[date, ...]) -> bool:
    return any(subject.startswith(day.isoformat()) for day in dates)


def recorded_decisions(
    dates: tuple[date, ...],
    triggers: Iterable[PhaseTrigger],
    reruns: Iterable[RerunRequest],
    alerts: Iterable[Alert],
) -> RecordedDecisions:
    """The processor's own decisions about ``dates`` among the records of the log."""
    return RecordedDecisions(
        triggers=[t for t in triggers if t.game_date in dates],
        reruns=[
            r for r in reruns if r.game_date in dates and r.requested_by == PROCESSOR_REQUESTER
        ],
        alerts=[
            a for a in alerts if a.kind in COMPARED_ALERT_KINDS and _on_dates(a.subject, dates)
        ],
    )


def _first_starts(triggers: Iterable[PhaseTrigger]) -> dict[tuple[date, int], PhaseTrigger]:
    """The first trigger of each (date, phase) (a re-fire after a rerun comes later)."""
    first: dict[tuple[date, int], PhaseTrigger] = {}
    for trigger in sorted(triggers, key=lambda t: t.triggered_at):
        first.setdefault((trigger.game_date, trigger.phase), trigger)
    return first


def compare(
    *,
    dates: tuple[date, ...],
    registry: str,
    completions: int,
    log_end: datetime,
    replayed_until: datetime,
    recorded: RecordedDecisions,
    outcome: ReplayOutcome,
) -> Comparison:
    fired, would = _first_starts(recorded.triggers), _first_starts(outcome.triggers)
    phases = tuple(
        PhaseStart(day, phase, fired.get((day, phase)), would.get((day, phase)))
        for day, phase in sorted(fired.keys() | would.keys())
    )
    alerts = [a for a in outcome.alerts if a.kind in COMPARED_ALERT_KINDS]
    return Comparison(
        dates=dates,
        registry=registry,
        completions=completions,
        log_end=log_end,
        replayed_until=replayed_until,
        phases=phases,
        reruns_sent=tuple(recorded.reruns),
        reruns_would_send=tuple(r for r in outcome.reruns if r.requested_at <= log_end),
        alerts_sent=tuple(recorded.alerts),
        alerts_would_send=tuple(a for a in alerts if a.raised_at <= log_end),
        reruns_after_log=tuple(r for r in outcome.reruns if r.requested_at > log_end),
        alerts_after_log=tuple(a for a in alerts if a.raised_at > log_end),
        dead_lettered=outcome.dead_lettered,
    )


# --- text -----------------------------------------------------------------------------------


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _start(trigger: PhaseTrigger | None, log_end: datetime) -> str:
    if trigger is None:
        return "-"
    after = _after(trigger.triggered_at, log_end)
    return f"{_at(trigger.triggered_at)} {trigger.reason} ({trigger.rule}){after}"


def format_delta(seconds: float | None) -> str:
    """``+50m00s``, ``-1h02m03s``, ``+0s``; ``-`` when one side did not fire."""
    if seconds is None:
        return "-"
    whole = round(abs(seconds))
    sign = "-" if seconds < 0 and whole else "+"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def _after(moment: datetime, log_end: datetime) -> str:
    return " (after the log ends)" if moment > log_end else ""


def _rerun_line(rerun: RerunRequest) -> str:
    return (
        f"{_at(rerun.requested_at)} {rerun.game_date} phase {rerun.phase} {rerun.processor_name} "
        f"({rerun.reason}, attempt {rerun.attempt})"
    )


def _alert_line(alert: Alert) -> str:
    return f"{_at(alert.raised_at)} {alert.kind} {alert.subject}"


def _differences(
    title: str,
    counts: tuple[int, int],
    only_sent: list[str],
    only_would: list[str],
    after_log: list[str],
) -> list[str]:
    sent, would = counts
    head = f"{title}: sent {sent}, would send {would}"
    lines = [head if only_sent or only_would else f"{head}: no difference"]
    lines += [f"  only sent:       {line}" for line in only_sent]
    lines += [f"  only would send: {line}" for line in only_would]
    lines += [f"  after log end:   {line}" for line in after_log]
    return lines


def render_text(comparison: Comparison) -> list[str]:
    """The report as lines for the terminal."""
    days = ", ".join(day.isoformat() for day in comparison.dates)
    head = (
        f"replay of {days} under {comparison.registry}: {comparison.completions} completion(s), "
        f"log read to {_at(comparison.log_end)}, replayed to {_at(comparison.replayed_until)}"
    )
    lines = [head]
    rows = [["date", "phase", "started (log)", f"would start ({comparison.registry})", "delta"]]
    rows += [
        [
            start.game_date.isoformat(),
            str(start.phase),
            _start(start.fired, comparison.log_end),
            _start(start.would_fire, comparison.log_end),
            format_delta(start.delta_seconds),
        ]
        for start in comparison.phases
    ]
    lines += aligned_rows(rows)
    lines += _differences(
        "reruns",
        (len(comparison.reruns_sent), len(comparison.reruns_would_send)),
        [_rerun_line(r) for r in comparison.reruns_only_sent],
        [_rerun_line(r) for r in comparison.reruns_only_would_send],
        [_rerun_line(r) for r in comparison.reruns_after_log],
    )
    lines += _differences(
        "alerts",
        (len(comparison.alerts_sent), len(comparison.alerts_would_send)),
        [_alert_line(a) for a in comparison.alerts_only_sent],
        [_alert_line(a) for a in comparison.alerts_only_would_send],
        [_alert_line(a) for a in comparison.alerts_after_log],
    )
    if comparison.dead_lettered:
        lines.append(
            f"{comparison.dead_lettered} completion(s) would be dead-lettered under "
            f"{comparison.registry} (e.g. a processor it does not declare)"
        )
    return lines


# --- JSON -----------------------------------------------------------------------------------


def _trigger_doc(trigger: PhaseTrigger | None) -> dict[str, Any] | None:
    if trigger is None:
        return None
    return {
        "at": trigger.triggered_at,
        "reason": trigger.reason,
        "rule": trigger.rule,
        "missing": trigger.missing,
    }


def _rerun_doc(rerun: RerunRequest) -> dict[str, Any]:
    return {
        "at": rerun.requested_at,
        "game_date": rerun.game_date,
        "phase": rerun.phase,
        "processor": rerun.processor_name,
        "reason": rerun.reason,
        "attempt": rerun.attempt,
    }


def _alert_doc(alert: Alert) -> dict[str, Any]:
    return {"at": alert.raised_at, "kind": alert.kind, "subject": alert.subject}


def json_document(comparison: Comparison) -> dict[str, Any]:
    """``replay --json``: the same report as one document."""
    return {
        "dates": list(comparison.dates),
        "registry": comparison.registry,
        "completions": comparison.completions,
        "log_end": comparison.log_end,
        "replayed_until": comparison.replayed_until,
        "phases": [
            {
                "game_date": start.game_date,
                "phase": start.phase,
                "fired": _trigger_doc(start.fired),
                "would_fire": _trigger_doc(start.would_fire),
                "delta_seconds": start.delta_seconds,
            }
            for start in comparison.phases
        ],
        "reruns": {
            "sent": len(comparison.reruns_sent),
            "would_send": len(comparison.reruns_would_send),
            "only_sent": [_rerun_doc(r) for r in comparison.reruns_only_sent],
            "only_would_send": [_rerun_doc(r) for r in comparison.reruns_only_would_send],
            "after_log_end": [_rerun_doc(r) for r in comparison.reruns_after_log],
        },
        "alerts": {
            "sent": len(comparison.alerts_sent),
            "would_send": len(comparison.alerts_would_send),
            "only_sent": [_alert_doc(a) for a in comparison.alerts_only_sent],
            "only_would_send": [_alert_doc(a) for a in comparison.alerts_only_would_send],
            "after_log_end": [_alert_doc(a) for a in comparison.alerts_after_log],
        },
        "dead_lettered": comparison.dead_lettered,
    }
