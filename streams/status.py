"""``phaseflow status --date D``: the status page (``GET /``) as a terminal table.

It reads a running worker's ``GET /status?date=D`` (default URL: this machine's
``PHASEFLOW_WEB_HOST:PHASEFLOW_WEB_PORT``), so it shows exactly what the page shows, including
that a date's phases are known only to the worker that owns its partition.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Final, TextIO

import orjson

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.dlq_letters import format_age
from phaseflow.streams.json_output import write_json
from phaseflow.streams.text_table import aligned_rows
from phaseflow.streams.web.status_summary import (
    DeadLetterSummary,
    GroupLag,
    SinkHealth,
    StatusSummary,
    phase_condition,
)

FETCH_TIMEOUT_SECONDS: Final = 10.0
_BARS: Final = "▁▂▃▄▅▆▇█"
_SPARK_POINTS: Final = 30
_MESSAGE_WIDTH: Final = 90

Fetch = Callable[[str], bytes]


def default_url(settings: Settings) -> str:
    """The worker's URL from settings; a wildcard bind address is reached on loopback."""
    host = settings.web_host if settings.web_host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}"


def summary_url(base_url: str, game_date: date) -> str:
    return f"{base_url.rstrip('/')}/status?{urllib.parse.urlencode({'date': game_date})}"


def unreadable_status(base: str, address: str, error: BaseException) -> str:
    """Why ``GET /status`` could not be read, in one line that says what to check."""
    if isinstance(error, urllib.error.HTTPError):
        return f"the worker at {base} answered {error.code} {error.reason} for {address}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, OSError) and reason.strerror:
        reason = reason.strerror
    return (
        f"no worker answers at {base} ({reason}); start one (phaseflow worker) or point at it "
        "with --url or PHASEFLOW_WEB_HOST / PHASEFLOW_WEB_PORT"
    )


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - operator-given http URL
        body: bytes = response.read()
    return body


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return aligned_rows([header, *rows])


def _clip(text: str, width: int = _MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def text_sparkline(values: Sequence[int]) -> str:
    """The last samples as block characters, scaled to the largest (blank for none)."""
    values = list(values)[-_SPARK_POINTS:]
    if not values:
        return ""
    top = max(1, *values)
    return "".join(_BARS[round(value / top * (len(_BARS) - 1))] for value in values)


def format_status(summary: StatusSummary) -> str:
    """Phases of each date in ``summary``, then lag, dead letters and recent alerts."""
    now = summary.generated_at
    lines = [f"as of {now:%Y-%m-%d %H:%M:%S %Z}; pipeline date {summary.today.isoformat()}"]
    if summary.deployment is not None:
        lines.append(_deployment_line(summary.deployment))
    for day in summary.dates:
        lines += ["", f"GAME DATE {day.game_date.isoformat()}"]
        rows = []
        for phase in day.phases:
            condition = phase_condition(phase, now)
            detail = condition.headline
            if condition.deadline:
                detail += f"; {condition.deadline}"
            rows.append(
                (
                    str(phase.phase),
                    phase.name,
                    condition.state.upper(),
                    f"{phase.done_count}/{len(phase.expected)}",
                    detail,
                )
            )
        lines += _table(("PHASE", "NAME", "STATE", "DONE", "DETAIL"), rows)
    if summary.sinks is not None:
        lines += ["", "BIGQUERY SINKS", *_sink_lines(summary.sinks)]
    lines += ["", "CONSUMER LAG", *_lag_lines(summary.lag)]
    lines += ["", "DEAD LETTERS", *_letter_lines(summary.dead_letters, summary)]
    lines += ["", "RECENT ALERTS"]
    if summary.alerts is None:
        lines.append("(no alert feed in this worker)")
    elif not summary.alerts:
        lines.append("none")
    else:
        lines += _table(
            ("RAISED", "SEVERITY", "KIND", "SUBJECT", "MESSAGE"),
            [
                (
                    f"{alert.raised_at:%Y-%m-%d %H:%M:%S}",
                    alert.severity,
                    alert.kind,
                    alert.subject,
                    _clip(alert.message),
                )
                for alert in summary.alerts
            ],
        )
    return "\n".join(lines)


def _deployment_line(deployment: Mapping[str, Any]) -> str:
    """Which deployment answered and the guarantee it runs (docs/deployment.md)."""
    idempotence = "on" if deployment.get("idempotent_producer") else "off"
    return (
        f"deployment {deployment.get('app_id')} ({deployment.get('app_id_source')}); "
        f"{deployment.get('processing_guarantee')}, idempotent producers {idempotence} "
        f"({deployment.get('guarantee_reason')})"
    )


def _sink_lines(sinks: Mapping[str, SinkHealth]) -> list[str]:
    if not sinks:
        return ["none enabled (no PHASEFLOW_BIGQUERY_ENDPOINT, PHASEFLOW_SINK_ENABLED unset)"]
    return _table(
        ("SINK", "STATE", "BUFFERED", "PROBLEM"),
        [
            (
                name,
                "RUNNING" if sink.running else "NOT RUNNING",
                str(sink.buffered),
                "-" if sink.problem is None else _clip(sink.problem),
            )
            for name, sink in sinks.items()
        ],
    )


def _lag_lines(groups: list[GroupLag] | None) -> list[str]:
    if groups is None:
        return ["(no lag monitor in this worker)"]
    return _table(
        ("GROUP", "STATUS", "LAG", "RECENT"),
        [
            (
                group.group,
                group.status,
                "no committed offsets" if group.lag is None else str(group.lag),
                text_sparkline([point.lag for point in group.history]),
            )
            for group in groups
        ],
    )


def _letter_lines(letters: DeadLetterSummary | None, summary: StatusSummary) -> list[str]:
    if letters is None:
        return ["(no dead-letter tracker in this worker)"]
    if not letters.unreplayed and not letters.failed_again:
        return ["none waiting for replay"]
    line = f"{letters.unreplayed} not replayed, {letters.failed_again} replay(s) failed again"
    if letters.oldest_age_seconds is not None:
        line += (
            f"; the oldest failed {format_age(timedelta(seconds=letters.oldest_age_seconds))} ago"
        )
    rows = [
        (
            f"{format_age(summary.generated_at - letter.failed_at)} ago",
            letter.source_topic,
            letter.error_type,
            _clip(letter.error),
        )
        for letter in letters.recent
    ]
    return [line, *_table(("FAILED", "SOURCE TOPIC", "ERROR TYPE", "ERROR"), rows)]


def run_status(
    settings: Settings,
    *,
    game_date: date,
    url: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    fetch: Fetch = http_get,
    as_json: bool = False,
) -> int:
    """Print the status of ``game_date`` (``as_json``: the worker's ``GET /status`` document as
    is); 1 (the reason on stderr, nothing on stdout, so a script reading stdout never parses an
    error as a status) when the worker cannot be asked."""
    stream = out or sys.stdout
    base = url or default_url(settings)
    address = summary_url(base, game_date)
    try:
        body = fetch(address)
    except (urllib.error.URLError, OSError) as error:
        (err or sys.stderr).write(f"phaseflow: error: {unreadable_status(base, address, error)}\n")
        return 1
    summary = StatusSummary.model_validate_json(body)  # a body that is no status fails here
    if as_json:
        write_json(stream, orjson.loads(body))
    else:
        stream.write(format_status(summary) + "\n")
    return 0
