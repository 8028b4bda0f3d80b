"""Messages a step decided to send, collected first and sent after the state is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, PhaseTrigger, RerunRequest
from phaseflow.streams.core.topics import TopicName


@dataclass
class Outbox:
    """What one event or tick causes: triggers, rerun requests, alerts."""

    now: datetime
    messages: list[tuple[TopicName, str, bytes]] = field(default_factory=list)
    triggers: list[PhaseTrigger] = field(default_factory=list)
    reruns: list[RerunRequest] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def trigger(self, trigger: PhaseTrigger) -> None:
        self.triggers.append(trigger)
        self.messages.append((TopicName.PHASE_TRIGGERS, trigger.key, encode(trigger)))

    def rerun(
        self, game_date: date, phase: int, processor: str, *, reason: str, attempt: int
    ) -> None:
        request = RerunRequest.model_validate(
            {
                "game_date": game_date,
                "phase": phase,
                "processor_name": processor,
                "reason": reason,
                "attempt": attempt,
                "request_id": RerunRequest.make_id(game_date, phase, processor, attempt),
                "requested_by": "phaseflow",
                "requested_at": self.now,
            }
        )
        self.reruns.append(request)
        self.messages.append((TopicName.RERUN_REQUESTS, request.key, encode(request)))

    def alert(
        self,
        kind: str,
        subject: str,
        message: str,
        *,
        severity: str = "warning",
        details: dict[str, Any] | None = None,
    ) -> None:
        alert = Alert.model_validate(
            {
                "kind": kind,
                "severity": severity,
                "subject": subject,
                "message": message,
                "details": details or {},
                "raised_at": self.now,
            }
        )
        self.alerts.append(alert)
        self.messages.append((TopicName.ALERTS, alert.key, encode(alert)))
