"""The status page (``GET /``): one self-contained HTML document rendered from a summary.

No external resources (the worker may have no internet, and the page must not leak that it is
looked at): CSS, the lag sparklines (inline SVG) and the refresh script are inline. Every text
from the summary (processor names, alert messages, dead-letter errors) goes through
:func:`html.escape`. The script re-fetches the page every ``refresh_seconds`` and swaps the
``<main>`` element, so the server-side rendering is the only rendering; without JavaScript a
``<meta refresh>`` in ``<noscript>`` reloads the page instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Final

from phaseflow.streams.dlq_letters import format_age
from phaseflow.streams.web.status_summary import (
    AlertLine,
    DateSummary,
    DeadLetterSummary,
    GroupLag,
    LagPoint,
    SinkHealth,
    StatusSummary,
    phase_condition,
)

SPARK_WIDTH: Final = 160
SPARK_HEIGHT: Final = 28

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#1d2430;background:#f6f7f9}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em}
.meta{color:#5b6573;font-size:.9em}.stale{color:#a33;font-weight:600}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #d5d9e0;padding:.35em .55em;vertical-align:top;text-align:left}
th{background:#eceff3;font-weight:600}
td.phase{min-width:9em;max-width:16em}
.phase .state{font-weight:600;text-transform:uppercase;font-size:.75em;letter-spacing:.04em}
.phase .detail{font-size:.85em;word-break:break-word}
.phase .deadline{font-size:.8em;color:#5b6573}
.triggered{background:#e3f4e6}.done{background:#eef8ef}.waiting{background:#fff6dd}
.failed,.rejected{background:#fde5e3}.not_started,.nothing_expected{background:#f3f4f6;color:#6b7280}
.sev-critical{color:#a3190d;font-weight:600}.sev-warning{color:#8a5a00}
.lag-OK{color:#207a3a}.lag-NO_COMMIT{color:#555}.lag-WARN,.lag-REWIND{color:#8a5a00}.lag-STALL,.lag-STOP{color:#a3190d}
svg.spark polyline{fill:none;stroke:#3b6fd1;stroke-width:1.5}
.none{color:#6b7280;font-style:italic}
"""

_SCRIPT: Final = """
(function(){
  var seconds = %d;
  var note = document.getElementById("refresh-note");
  function refresh(){
    fetch(window.location.href, {cache: "no-store"}).then(function(response){
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function(text){
      var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
      document.querySelector("main").replaceWith(fresh);
      note.textContent = "refreshes every " + seconds + " s";
      note.className = "meta";
    }).catch(function(error){
      note.textContent = "refresh failed (" + error.message + "); showing older data";
      note.className = "stale";
    });
  }
  setInterval(refresh, seconds * 1000);
})();
"""


def render_status_page(summary: StatusSummary, *, refresh_seconds: int = 5) -> str:
    """The whole page for ``summary``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>phaseflow status</title>"
        f'<noscript><meta http-equiv="refresh" content="{refresh_seconds}"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        "<h1>phaseflow status</h1>"
        f'<p id="refresh-note" class="meta">refreshes every {refresh_seconds} s</p>'
        f"{render_main(summary)}"
        f"<script>{_SCRIPT % refresh_seconds}</script>"
        "</body></html>\n"
    )


def render_main(summary: StatusSummary) -> str:
    """The ``<main>`` element: the part the page's script replaces on refresh."""
    now = summary.generated_at
    return (
        "<main>"
        f'<p class="meta">as of <time id="generated-at">{_e(_stamp(now))}</time>; '
        f"pipeline date {_e(summary.today.isoformat())}</p>"
        "<h2>Phases</h2>"
        f"{_phase_grid(summary.dates, now)}"
        f"{_sinks(summary.sinks)}"
        "<h2>Consumer lag</h2>"
        f"{_lag(summary.lag)}"
        "<h2>Dead letters</h2>"
        f"{_dead_letters(summary.dead_letters, now)}"
        "<h2>Recent alerts</h2>"
        f"{_alerts(summary.alerts)}"
        "</main>"
    )


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _none(text: str) -> str:
    return f'<p class="none">{_e(text)}</p>'


def _phase_grid(dates: list[DateSummary], now: datetime) -> str:
    if not dates:
        return _none("no game dates in this worker's readiness table")
    numbers = sorted({phase.phase for day in dates for phase in day.phases})
    names = {phase.phase: phase.name for day in dates for phase in day.phases}
    head = "".join(f"<th>{number} · {_e(names[number])}</th>" for number in numbers)
    rows = []
    for day in dates:
        by_number = {phase.phase: phase for phase in day.phases}
        cells = []
        for number in numbers:
            phase = by_number.get(number)
            if phase is None:
                cells.append('<td class="phase not_started">-</td>')
                continue
            condition = phase_condition(phase, now)
            deadline = (
                f'<div class="deadline">{_e(condition.deadline)}</div>'
                if condition.deadline
                else ""
            )
            cells.append(
                f'<td class="phase {condition.state}" data-phase="{number}" '
                f'data-state="{condition.state}">'
                f'<div class="state">{_e(condition.state.replace("_", " "))}</div>'
                f'<div class="detail">{_e(condition.headline)}</div>{deadline}</td>'
            )
        day_text = _e(day.game_date.isoformat())
        rows.append(f'<tr data-date="{day_text}"><th>{day_text}</th>{"".join(cells)}</tr>')
    return (
        f'<table id="phases"><thead><tr><th>game date</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def sparkline(points: list[LagPoint]) -> str:
    """An inline SVG line of the lag samples, scaled to the largest (0 at the bottom)."""
    if len(points) < 2:
        return '<span class="none">collecting samples</span>'
    top = max(1, *(point.lag for point in points))
    step = SPARK_WIDTH / (len(points) - 1)
    coordinates = " ".join(
        f"{index * step:.1f},{SPARK_HEIGHT - 2 - (point.lag / top) * (SPARK_HEIGHT - 4):.1f}"
        for index, point in enumerate(points)
    )
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img">'
        f"<title>lag over the last {len(points)} samples, max {top}</title>"
        f'<polyline points="{coordinates}"/></svg>'
    )


def _sinks(sinks: dict[str, SinkHealth] | None) -> str:
    if sinks is None:
        return ""
    if not sinks:
        return "<h2>BigQuery sinks</h2>" + _none("none enabled in this worker")
    rows = "".join(
        f'<tr data-sink="{_e(name)}"><td>{_e(name)}</td>'
        f'<td class="sink-{"running" if sink.running else "stopped"}">'
        f"{'running' if sink.running else 'not running'}</td>"
        f"<td>{sink.buffered}</td><td>{_e(sink.problem or '')}</td></tr>"
        for name, sink in sinks.items()
    )
    return (
        '<h2>BigQuery sinks</h2><table id="sinks"><thead><tr><th>sink</th><th>state</th>'
        f"<th>rows buffered</th><th>problem</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _lag(groups: list[GroupLag] | None) -> str:
    if groups is None:
        return _none("no lag monitor in this worker")
    rows = "".join(
        f'<tr data-group="{_e(group.group)}"><td>{_e(group.group)}</td>'
        f'<td class="lag-{_e(group.status)}">{_e(group.status)}</td>'
        f"<td>{'no committed offsets' if group.lag is None else group.lag}</td>"
        f"<td>{sparkline(group.history)}</td></tr>"
        for group in groups
    )
    return (
        '<table id="lag"><thead><tr><th>group</th><th>status</th><th>lag (messages)</th>'
        f"<th>recent samples</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _dead_letters(letters: DeadLetterSummary | None, now: datetime) -> str:
    if letters is None:
        return _none("no dead-letter tracker in this worker")
    if not letters.unreplayed and not letters.failed_again:
        return '<p id="dead-letters">none waiting for replay</p>'
    oldest = (
        ""
        if letters.oldest_age_seconds is None
        else f"; the oldest failed {format_age(timedelta(seconds=letters.oldest_age_seconds))} ago"
    )
    rows = "".join(
        f"<tr><td>{_e(format_age(now - letter.failed_at))} ago</td>"
        f"<td>{_e(letter.source_topic)}</td><td>{_e(letter.error_type)}</td>"
        f"<td>{_e(letter.error)}</td></tr>"
        for letter in letters.recent
    )
    return (
        f'<p id="dead-letters">{letters.unreplayed} not replayed, '
        f"{letters.failed_again} replay(s) failed again{_e(oldest)} "
        "(<code>phaseflow dlq list</code>)</p>"
        "<table><thead><tr><th>failed</th><th>source topic</th><th>error type</th>"
        f"<th>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _alerts(alerts: list[AlertLine] | None) -> str:
    if alerts is None:
        return _none("no alert feed in this worker")
    if not alerts:
        return '<p id="alerts" class="none">no alerts</p>'
    rows = "".join(
        f"<tr><td>{_e(_stamp(alert.raised_at))}</td>"
        f'<td class="sev-{_e(alert.severity)}">{_e(alert.severity)}</td>'
        f"<td>{_e(alert.kind)}</td><td>{_e(alert.subject)}</td><td>{_e(alert.message)}</td></tr>"
        for alert in alerts
    )
    return (
        '<table id="alerts"><thead><tr><th>raised</th><th>severity</th><th>kind</th>'
        f"<th>subject</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>"
    )
