"""Which alerts a route takes: ``PHASEFLOW_NOTIFY_ROUTES`` parsed into one filter per route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from phaseflow.models.fields import ALERT_KINDS, SEVERITIES
from phaseflow.streams.cli_errors import BadInputError

RouteName = Literal["webhook", "slack", "pagerduty", "email"]
ROUTE_NAMES: Final[tuple[str, ...]] = get_args(RouteName)
SEVERITY_RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(SEVERITIES)}
DEFAULT_MIN_SEVERITY: Final = "warning"


class RouteConfigError(BadInputError):
    """A route setting is wrong; the message names the setting (the worker exits 2)."""


@dataclass(frozen=True)
class RouteFilter:
    """Alerts of ``kinds`` (None: every kind) at ``min_severity`` or above."""

    min_severity: str = DEFAULT_MIN_SEVERITY
    kinds: frozenset[str] | None = None

    def accepts(self, kind: str, severity: str) -> bool:
        """Whether an alert of ``kind`` at ``severity`` goes to this route."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]


def parse_filters(specs: tuple[str, ...]) -> dict[str, RouteFilter]:
    """``route=min_severity[:kind+kind]`` entries -> filters; a wrong entry raises
    :class:`RouteConfigError` saying which part is wrong."""
    filters: dict[str, RouteFilter] = {}
    for spec in specs:
        route, equals, rest = spec.partition("=")
        route = route.strip()
        severity, _, kinds_text = rest.partition(":")
        severity = severity.strip()
        problem = None
        if not equals or route not in ROUTE_NAMES:
            problem = f"route must be one of {', '.join(ROUTE_NAMES)}"
        elif severity not in SEVERITY_RANK:
            problem = f"min_severity must be one of {', '.join(SEVERITIES)}"
        kinds = frozenset(kind.strip() for kind in kinds_text.split("+") if kind.strip())
        unknown = sorted(kinds - set(ALERT_KINDS))
        if problem is None and unknown:
            problem = (
                f"unknown alert kind(s) {', '.join(unknown)} (known: {', '.join(ALERT_KINDS)})"
            )
        if problem is None and route in filters:
            problem = f"route {route} is named twice"
        if problem is not None:
            raise RouteConfigError(
                f"PHASEFLOW_NOTIFY_ROUTES entry {spec!r}: {problem}; the form is "
                "route=min_severity[:kind+kind...]"
            )
        filters[route] = RouteFilter(severity, kinds or None)
    return filters
