"""Quiet hours of a route: ``PHASEFLOW_NOTIFY_QUIET_HOURS`` parsed into one daily window per route.

A window is local time of ``pipeline_timezone`` (the operators' day, with its DST shifts); the
start is inside it and the end is not, and a window whose end is before its start crosses
midnight (``22:00-07:00``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phaseflow.streams.notify.routes import ROUTE_NAMES, RouteConfigError

_FORM = "route=HH:MM-HH:MM"


@dataclass(frozen=True)
class QuietHours:
    """Daily window from ``start`` to ``end`` in ``zone``."""

    start: time
    end: time
    zone: ZoneInfo

    def active(self, now: datetime) -> bool:
        """Whether ``now`` (time-zone aware) falls in the window."""
        local = now.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _clock_time(text: str) -> time:
    hours, colon, minutes = text.strip().partition(":")
    if not colon or len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(text)
    return time(int(hours), int(minutes))


def parse_quiet_hours(specs: tuple[str, ...], zone_name: str) -> dict[str, QuietHours]:
    """``route=HH:MM-HH:MM`` entries in time zone ``zone_name`` -> windows; a wrong entry (or
    zone) raises :class:`RouteConfigError` naming the setting and the wrong part."""
    windows: dict[str, QuietHours] = {}
    if not specs:
        return windows
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise RouteConfigError(
            f"PHASEFLOW_PIPELINE_TIMEZONE {zone_name!r} is not a known time zone (e.g. "
            "America/New_York); PHASEFLOW_NOTIFY_QUIET_HOURS is read in it"
        ) from error
    for spec in specs:
        route, equals, rest = spec.partition("=")
        route = route.strip()
        start_text, _, end_text = rest.partition("-")
        problem = None
        if not equals or route not in ROUTE_NAMES:
            problem = f"route must be one of {', '.join(ROUTE_NAMES)}"
        elif route in windows:
            problem = f"route {route} is named twice"
        else:
            try:
                start, end = _clock_time(start_text), _clock_time(end_text)
            except ValueError:
                problem = "start and end must be times HH:MM (00:00 to 23:59)"
            else:
                if start == end:
                    problem = "start and end are the same time (an empty window)"
        if problem is not None:
            raise RouteConfigError(
                f"PHASEFLOW_NOTIFY_QUIET_HOURS entry {spec!r}: {problem}; the form is {_FORM}"
            )
        windows[route] = QuietHours(start, end, zone)
    return windows
