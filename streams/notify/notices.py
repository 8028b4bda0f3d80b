"""What a route delivers: an alert raised, an alert resolved, or a summary of dropped alerts.

Resolves come from events that say the condition cleared. Only two kinds have one:

* ``consumer_lag``: the lag monitor's alert with ``details.status == "OK"`` (the group is back
  to OK) resolves ``consumer_lag:{group}``;
* ``phase_timeout`` and ``validation_failed`` of phase N of a date: a trigger of phase N+1 of that
  date fired for another reason than the deadline (``ready``, ``rerun``, ``manual``) resolves
  ``phase_timeout:{date}:phase_{N}`` and ``validation_failed:{date}:phase_{N}``.

The other kinds (circuit_open, sla_breach, processor_slowdown, phase_stalled, orphan_state, dlq)
have no event that clears them; they are raised only (docs/alerting.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from pydantic import JsonValue

from phaseflow.models.events import Alert, PhaseTrigger

Action = Literal["trigger", "resolve", "summary"]
#: Trigger reasons that mean the phase before it completed (not that its deadline passed).
_CLEARING_REASONS: Final = frozenset({"ready", "rerun", "manual"})
_TRIGGER_RESOLVES: Final = ("phase_timeout", "validation_failed")


@dataclass(frozen=True)
class Notice:
    """One message a route sends; ``key`` is the alert key (PagerDuty's ``dedup_key``)."""

    action: Action
    key: str
    kind: str
    severity: str
    subject: str
    message: str
    at: datetime
    details: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """One line: what and how bad."""
        if self.action == "resolve":
            return f"RESOLVED {self.kind} {self.subject}"
        if self.action == "summary":
            return f"phaseflow: {self.subject}"
        return f"{self.severity.upper()} {self.kind} {self.subject}"


def from_alert(alert: Alert) -> Notice:
    """The notice of an alert: a resolve when it reports its condition cleared."""
    cleared = alert.kind == "consumer_lag" and alert.details.get("status") == "OK"
    return Notice(
        action="resolve" if cleared else "trigger",
        key=alert.key,
        kind=alert.kind,
        severity=alert.severity,
        subject=alert.subject,
        message=alert.message,
        at=alert.raised_at,
        details=dict(alert.details),
    )


def from_trigger(trigger: PhaseTrigger) -> list[Notice]:
    """Resolves of the previous phase's timeout and validation alerts (none for a deadline
    trigger, which fires because the phase did not complete)."""
    if trigger.reason not in _CLEARING_REASONS or trigger.phase <= 1:
        return []
    subject = f"{trigger.game_date.isoformat()}:phase_{trigger.phase - 1}"
    return [
        Notice(
            action="resolve",
            key=f"{kind}:{subject}",
            kind=kind,
            severity="info",
            subject=subject,
            message=(
                f"phase {trigger.phase} of {trigger.game_date} started ({trigger.reason}): "
                f"phase {trigger.phase - 1} completed"
            ),
            at=trigger.triggered_at,
            details={"trigger_id": trigger.trigger_id, "reason": trigger.reason},
        )
        for kind in _TRIGGER_RESOLVES
    ]
