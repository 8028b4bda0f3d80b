"""The body each receiver expects for a :class:`Notice`."""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any, Final

from phaseflow.streams.notify.notices import Notice

_SLACK_EMOJI: Final = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}
_SOURCE: Final = "phaseflow"


def webhook_body(notice: Notice) -> dict[str, Any]:
    """The generic webhook: the notice as JSON."""
    return {
        "action": notice.action,
        "key": notice.key,
        "kind": notice.kind,
        "severity": notice.severity,
        "subject": notice.subject,
        "message": notice.message,
        "at": notice.at.isoformat(),
        "details": notice.details,
    }


def slack_body(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notifications, fallback) plus one section."""
    emoji = ":white_check_mark:" if notice.action == "resolve" else _SLACK_EMOJI[notice.severity]
    text = f"{emoji} *{notice.title}*\n{notice.message}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"`{notice.key}` at {notice.at.isoformat()}"}
                ],
            },
        ],
    }


def pagerduty_body(notice: Notice, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event: trigger, or resolve of the same ``dedup_key`` (the alert key)."""
    if notice.action == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": notice.key}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notice.key,
        "payload": {
            "summary": f"{notice.title}: {notice.message}"[:1024],
            "source": _SOURCE,
            "severity": notice.severity,
            "timestamp": notice.at.isoformat(),
            "component": notice.subject,
            "class": notice.kind,
            "custom_details": notice.details,
        },
    }


def email_message(notice: Notice, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """A plain-text mail: the title as subject, the message and details as body."""
    mail = EmailMessage()
    mail["Subject"] = f"[phaseflow] {notice.title}"
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    details = json.dumps(notice.details, indent=2, sort_keys=True, default=str)
    mail.set_content(
        f"{notice.message}\n\nkey: {notice.key}\nat: {notice.at.isoformat()}\n\n{details}\n"
    )
    return mail
