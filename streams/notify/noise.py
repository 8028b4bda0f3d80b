"""Noise control of one route: repeats, severity rises, resolves, and an hourly rate limit.

State lives in memory, per worker: an alert key always lands on the same partition of the
alerts topic, so one worker sees every alert of a key. A restarted worker forgets what it sent,
so the first repeat of a key after a restart is delivered again (docs/alerting.md).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from phaseflow.streams.notify.notices import Notice
from phaseflow.streams.notify.routes import SEVERITY_RANK

Verdict = Literal["send", "repeat", "not_open", "rate_limited"]
_HOUR: Final = timedelta(hours=1)


@dataclass
class _Sent:
    severity: int
    at: datetime


class NoiseControl:
    """Decides whether a notice is sent; :meth:`sent` records what was."""

    def __init__(self, *, repeat_after: timedelta, max_per_hour: int) -> None:
        self._repeat_after = repeat_after
        self._max_per_hour = max_per_hour
        self._open: dict[str, _Sent] = {}
        self._recent: deque[datetime] = deque()
        self._dropped: Counter[str] = Counter()

    def verdict(self, notice: Notice, now: datetime) -> Verdict:
        """``send``, or why not: a repeat within ``repeat_after`` at no higher severity, a
        resolve of a key this route never raised, or the hourly limit reached (counted for the
        summary). Resolves are not limited: they end pages."""
        if notice.action == "resolve":
            return "send" if notice.key in self._open else "not_open"
        previous = self._open.get(notice.key)
        if (
            previous is not None
            and now - previous.at < self._repeat_after
            and SEVERITY_RANK[notice.severity] <= previous.severity
        ):
            return "repeat"
        if not self._has_room(now):
            self._dropped[notice.kind] += 1
            return "rate_limited"
        return "send"

    def sent(self, notice: Notice, now: datetime) -> None:
        """Record a delivered notice."""
        if notice.action == "resolve":
            self._open.pop(notice.key, None)
            return
        self._recent.append(now)
        if notice.action == "trigger":
            self._open[notice.key] = _Sent(SEVERITY_RANK[notice.severity], now)

    def summary(self, now: datetime) -> Notice | None:
        """Once the route has room again: one notice counting what the limit dropped."""
        if not self._dropped or not self._has_room(now):
            return None
        dropped, self._dropped = self._dropped, Counter()
        total = sum(dropped.values())
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(dropped.items()))
        return Notice(
            action="summary",
            key="phaseflow:dropped",
            kind="summary",
            severity="warning",
            subject=f"{total} alert(s) not sent",
            message=(
                f"{total} alert(s) were not sent: more than {self._max_per_hour} an hour "
                f"(PHASEFLOW_NOTIFY_MAX_PER_HOUR): {kinds}. The status page (GET /) lists the "
                "latest alerts."
            ),
            at=now,
            details=dict(dropped),
        )

    def _has_room(self, now: datetime) -> bool:
        while self._recent and now - self._recent[0] >= _HOUR:
            self._recent.popleft()
        return len(self._recent) < self._max_per_hour
