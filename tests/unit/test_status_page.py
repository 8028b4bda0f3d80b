"""The status summary, its HTML page and its terminal table, without a worker."""

from __future__ import annotations

import io
import urllib.error
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, DeadLetter
from phaseflow.streams.cli import _parser
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.dlq_letters import ledger_key
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from phaseflow.streams.monitoring.lag import LAG_HISTORY_ROUNDS, LagMonitor
from phaseflow.streams.monitoring.lag_sampler import PartitionLag
from phaseflow.streams.monitoring.recent_alerts import RecentAlerts
from phaseflow.streams.status import (
    default_url,
    format_status,
    run_status,
    summary_url,
    text_sparkline,
    unreadable_status,
)
from phaseflow.streams.web.status_page import SPARK_HEIGHT, render_status_page, sparkline
from phaseflow.streams.web.status_summary import (
    LagPoint,
    PhaseSummary,
    StatusSummary,
    build_summary,
    phase_condition,
    recent_game_dates,
)

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
DAY = date(2026, 11, 28)
HOSTILE = '<script>alert("x")</script>'


def phase(number: int, **fields: Any) -> PhaseSummary:
    values: dict[str, Any] = {
        "phase": number,
        "name": f"phase{number}",
        "expected": ["a", "b"],
        "done": [],
        "missing": ["a", "b"],
        "processors": {},
        **fields,
    }
    return PhaseSummary.model_validate(values)


@pytest.mark.parametrize(
    ("fields", "state", "headline", "deadline"),
    [
        (
            {"done": ["a", "b"], "missing": [], "trigger": {"reason": "ready"}},
            "triggered",
            "triggered phase 3 (ready)",
            None,
        ),
        (
            {"done": ["a"], "missing": ["b"], "trigger": {"reason": "timeout"}},
            "triggered",
            "triggered phase 3 (timeout) without b",
            None,
        ),
        ({"done": ["a", "b"], "missing": []}, "done", "done (2/2)", None),
        (
            {"done": ["a", "b"], "missing": [], "rejected": "5 predictions < minimum 10"},
            "rejected",
            "rejected by the validation gate: 5 predictions < minimum 10",
            None,
        ),
        ({"expected": [], "missing": []}, "nothing_expected", "no processors expected", None),
        ({}, "not_started", "not started (2 expected)", None),
        (
            {
                "done": ["a"],
                "missing": ["b"],
                "processors": {"a": "success"},
                "deadline": NOW + timedelta(hours=1, minutes=20),
            },
            "waiting",
            "waiting on b",
            "deadline in 1h20m",
        ),
        (
            {
                "missing": ["a", "b"],
                "processors": {"a": "failed"},
                "deadline": NOW - timedelta(minutes=5),
            },
            "failed",
            "waiting on a, b (failed: a)",
            "deadline passed 5m ago",
        ),
    ],
)
def test_phase_condition(
    fields: dict[str, Any], state: str, headline: str, deadline: str | None
) -> None:
    condition = phase_condition(phase(2, **fields), NOW)
    assert (condition.state, condition.headline, condition.deadline) == (
        state,
        headline,
        deadline,
    )


def test_recent_game_dates_are_the_latest_distinct_dates() -> None:
    days = [date(2026, 11, d) for d in (25, 28, 28, 27, 26)]
    assert recent_game_dates(days) == [date(2026, 11, 28), date(2026, 11, 27), date(2026, 11, 26)]
    assert recent_game_dates(days, 1) == [date(2026, 11, 28)]
    assert recent_game_dates([], 3) == []


class FakeLag:
    def __init__(self) -> None:
        self.groups = ["phaseflow", "other"]

    def history(self) -> list[tuple[datetime, dict[str, int]]]:
        return [(NOW - timedelta(seconds=10), {"phaseflow": 4}), (NOW, {"phaseflow": 9})]

    def group_status(self, group: str) -> str:
        return "WARN" if group == "phaseflow" else "OK"


class FakeLetters:
    unreplayed = 2
    failed_again = 1

    def oldest_age(self, now: datetime) -> timedelta | None:
        return now - (NOW - timedelta(hours=3))

    def recent(self) -> list[DeadLetter]:
        return [dead_letter(NOW - timedelta(minutes=m), f"bad {m}") for m in (1, 2, 3)]


class FakeAlerts:
    def recent(self, now: datetime) -> list[Alert]:
        return [alert(now - timedelta(minutes=m), f"message {m}") for m in range(15)]


def dead_letter(failed_at: datetime, error: str, *, offset: int = 0) -> DeadLetter:
    return DeadLetter.wrap(
        source_topic="pf.phase-completions",
        partition=0,
        offset=offset,
        key=b"2026-11-28",
        value=b"nope",
        error=error,
        error_type="not_json",
        failed_at=failed_at,
    )


def alert(raised_at: datetime, message: str, subject: str = "phaseflow") -> Alert:
    return Alert(
        kind="consumer_lag",
        severity="warning",
        subject=subject,
        message=message,
        raised_at=raised_at,
    )


def full_summary() -> dict[str, Any]:
    def phases_of(day: date) -> list[dict[str, Any]]:
        return [
            {**phase(1, done=["a", "b"], missing=[]).model_dump(mode="json"), "latency_s": 3.5},
            phase(2, done=["a"], missing=["b"], processors={"a": "success"}).model_dump(
                mode="json"
            ),
        ]

    return build_summary(
        now=NOW,
        today=date(2026, 11, 29),
        dates=[DAY],
        phases_of=phases_of,
        lag=FakeLag(),
        letters=FakeLetters(),
        alerts=FakeAlerts(),
    )


def test_build_summary_is_json_and_reads_back_ignoring_unknown_fields() -> None:
    body = full_summary()
    parsed = StatusSummary.model_validate_json(orjson.dumps(body))
    assert body["dates"][0]["phases"][0]["latency_s"] == 3.5  # passed through to the JSON
    assert [p.phase for p in parsed.dates[0].phases] == [1, 2]
    assert parsed.lag is not None
    assert [(g.group, g.status, g.lag) for g in parsed.lag] == [
        ("phaseflow", "WARN", 9),
        ("other", "OK", None),
    ]
    assert [point.lag for point in parsed.lag[0].history] == [4, 9]
    assert parsed.lag[1].history == []
    assert parsed.dead_letters is not None
    assert parsed.dead_letters.unreplayed == 2
    assert parsed.dead_letters.oldest_age_seconds == 3 * 3600
    assert [line.error for line in parsed.dead_letters.recent] == ["bad 1", "bad 2", "bad 3"]
    assert parsed.alerts is not None
    assert len(parsed.alerts) == 10  # the newest ten of fifteen
    assert parsed.alerts[0].message == "message 0"


def test_sections_of_missing_features_are_null() -> None:
    body = build_summary(
        now=NOW,
        today=NOW.date(),
        dates=[],
        phases_of=lambda _day: [],
        lag=None,
        letters=None,
        alerts=None,
    )
    summary = StatusSummary.model_validate(body)
    assert (summary.lag, summary.dead_letters, summary.alerts) == (None, None, None)
    page = render_status_page(summary)
    assert "no lag monitor in this worker" in page
    assert "no game dates in this worker" in page


class _Cells(HTMLParser):
    """Collects the phase cells' (date, phase, state) and every resource a tag would load."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []
        self.loads: list[str] = []
        self.scripts = 0
        self._date = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and found.get("data-date"):
            self._date = found["data-date"] or ""
        if tag == "td" and found.get("data-state"):
            self.cells.append((self._date, found["data-phase"] or "", found["data-state"] or ""))
        self.loads += [value or "" for name, value in attrs if name in ("src", "href")]


def test_page_shows_the_grid_and_escapes_every_text() -> None:
    body = full_summary()
    body["dates"][0]["phases"][1]["missing"] = [HOSTILE]
    body["dates"][0]["phases"][1]["expected"] = ["a", HOSTILE]
    body["alerts"][0]["message"] = f'"><img src=x onerror=alert(1)>{HOSTILE}'
    body["dead_letters"]["recent"][0]["error"] = HOSTILE
    page = render_status_page(StatusSummary.model_validate(body), refresh_seconds=7)

    parser = _Cells()
    parser.feed(page)
    assert parser.cells == [("2026-11-28", "1", "done"), ("2026-11-28", "2", "waiting")]
    assert parser.scripts == 1  # only the page's own refresh script
    assert parser.loads == []  # nothing external: no src/href at all
    assert HOSTILE not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "setInterval(refresh, seconds * 1000)" in page
    assert "var seconds = 7;" in page
    assert '<meta http-equiv="refresh" content="7">' in page
    assert "2 not replayed, 1 replay(s) failed again; the oldest failed 3h ago" in page
    assert '<svg class="spark"' in page


def test_sparkline_scales_to_the_largest_sample_and_needs_two() -> None:
    assert "collecting samples" in sparkline([LagPoint(at=NOW, lag=5)])
    svg = sparkline([LagPoint(at=NOW, lag=lag) for lag in (0, 10, 5)])
    points = svg.split('points="')[1].split('"')[0].split()
    heights = [float(point.split(",")[1]) for point in points]
    assert heights[0] == SPARK_HEIGHT - 2  # zero at the bottom
    assert heights[1] == 2  # the largest at the top
    assert heights[1] < heights[2] < heights[0]


def test_terminal_table_has_the_same_information() -> None:
    summary = StatusSummary.model_validate(full_summary())
    text = format_status(summary)
    lines = text.splitlines()
    assert "GAME DATE 2026-11-28" in lines
    phase_rows = [line.split() for line in lines if line.startswith(("1 ", "2 "))]
    assert phase_rows[0][:4] == ["1", "phase1", "DONE", "2/2"]
    assert phase_rows[1][:4] == ["2", "phase2", "WAITING", "1/2"]
    assert "waiting on b" in text
    assert any(line.split()[:3] == ["phaseflow", "WARN", "9"] for line in lines)
    assert any(line.split()[:4] == ["other", "OK", "no", "committed"] for line in lines)
    assert "2 not replayed, 1 replay(s) failed again; the oldest failed 3h ago" in text
    assert "message 9" in text
    assert "message 10" not in text


SINKS = {
    "prediction_sink": {
        "running": False,
        "buffered": 0,
        "problem": "starting: ConnectionError: BigQuery at http://127.0.0.1:1 refused (retrying)",
    },
    "audit_sink": {"running": True, "buffered": 12, "problem": None},
}


def test_the_sinks_say_whether_they_run_and_why_not() -> None:
    """A sink that cannot start is on the terminal table and the page, with its reason; a
    worker without sinks says so; an older worker's summary (no "sinks") shows no section."""
    summary = StatusSummary.model_validate({**full_summary(), "sinks": SINKS})
    lines = format_status(summary).splitlines()
    section = lines[lines.index("BIGQUERY SINKS") + 1 : lines.index("CONSUMER LAG") - 1]
    assert [line.split()[:4] for line in section] == [
        ["SINK", "STATE", "BUFFERED", "PROBLEM"],
        ["prediction_sink", "NOT", "RUNNING", "0"],
        ["audit_sink", "RUNNING", "12", "-"],
    ]
    assert section[1].endswith(
        "starting: ConnectionError: BigQuery at http://127.0.0.1:1 refused (retrying)"
    )
    page = render_status_page(summary)
    assert '<tr data-sink="prediction_sink"><td>prediction_sink</td>' in page
    assert "not running</td><td>0</td><td>starting: ConnectionError" in page

    none = StatusSummary.model_validate({**full_summary(), "sinks": {}})
    text = format_status(none)
    assert "BIGQUERY SINKS\nnone enabled (no PHASEFLOW_BIGQUERY_ENDPOINT" in text
    assert "none enabled in this worker" in render_status_page(none)

    older = StatusSummary.model_validate(full_summary())
    assert "BIGQUERY SINKS" not in format_status(older)
    assert "BigQuery sinks" not in render_status_page(older)


def test_text_sparkline() -> None:
    assert text_sparkline([]) == ""
    assert text_sparkline([0, 5, 10]) == "▁▅█"
    assert len(text_sparkline(list(range(100)))) == 30


def test_run_status_asks_the_worker_and_reports_an_unreachable_one() -> None:
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return orjson.dumps(full_summary())

    out = io.StringIO()
    settings = Settings(web_host="0.0.0.0", web_port=7001)  # noqa: S104 - a bind address
    assert run_status(settings, game_date=DAY, out=out, fetch=fetch) == 0
    assert asked == ["http://127.0.0.1:7001/status?date=2026-11-28"]
    assert "GAME DATE 2026-11-28" in out.getvalue()

    def refuse(url: str) -> bytes:
        raise urllib.error.URLError("connection refused")

    out, err = io.StringIO(), io.StringIO()
    code = run_status(settings, game_date=DAY, url="http://w:1/", out=out, err=err, fetch=refuse)
    assert code == 1
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "phaseflow: error: no worker answers at http://w:1/ (connection refused); start one "
        "(phaseflow worker) or point at it with --url or PHASEFLOW_WEB_HOST / PHASEFLOW_WEB_PORT\n"
    )


def test_status_names_what_went_wrong_in_one_line() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert unreadable_status("http://w:1", "http://w:1/status", refused).startswith(
        "no worker answers at http://w:1 (Connection refused); start one"
    )
    timed_out = TimeoutError("timed out")
    assert "(timed out)" in unreadable_status("http://w:1", "http://w:1/status", timed_out)
    denied = urllib.error.HTTPError(
        "http://w:1/status", 503, "Service Unavailable", Message(), None
    )
    assert unreadable_status("http://w:1", "http://w:1/status", denied) == (
        "the worker at http://w:1 answered 503 Service Unavailable for http://w:1/status"
    )


def test_default_url_and_summary_url() -> None:
    assert default_url(Settings(web_host="10.0.0.5", web_port=6066)) == "http://10.0.0.5:6066"
    assert default_url(Settings(web_host="::1", web_port=80)) == "http://[::1]:80"
    assert summary_url("http://w:1/", DAY) == "http://w:1/status?date=2026-11-28"


def test_cli_parses_status() -> None:
    args = _parser().parse_args(["status", "--date", "2026-11-28", "--url", "http://w:1"])
    assert (args.command, args.date, args.url) == ("status", DAY, "http://w:1")
    with pytest.raises(SystemExit):
        _parser().parse_args(["status", "--date", "2026-13-01"])


def test_recent_alerts_keeps_the_newest_within_the_lookback() -> None:
    feed = RecentAlerts(Settings(), capacity=3, lookback=timedelta(hours=1))
    for minutes in (50, 5, 90, 20, 1):
        feed.observe(encode(alert(NOW - timedelta(minutes=minutes), f"m{minutes}")))
    feed.observe(b"not an alert")
    feed.observe(None)
    assert [a.message for a in feed.recent(NOW)] == ["m1", "m5", "m20"]
    # Later, only what was raised in the hour before is shown.
    assert [a.message for a in feed.recent(NOW + timedelta(minutes=45))] == ["m1", "m5"]


def test_dead_letter_tracker_keeps_recent_unreplayed_letters_newest_first() -> None:
    settings = Settings(topic_prefix="pf")
    tracker = DeadLetterTracker(settings)
    letters = [dead_letter(NOW, f"error {n}", offset=n) for n in range(25)]
    for item in letters:
        tracker.observe(settings.topic(TopicName.DEAD_LETTERS), None, encode(item))
    recent = tracker.recent()
    assert [letter.error for letter in recent[:2]] == ["error 24", "error 23"]
    assert len(recent) == 20  # bounded
    tracker.observe(
        settings.topic(TopicName.DEAD_LETTER_REPLAYS), ledger_key(letters[24]).encode(), b"{}"
    )
    assert tracker.recent()[0].error == "error 23"


class ScriptedLag:
    """Lag source whose two partitions of group ``g`` lag by what the test sets."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.lags = (0, 0)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def sample(self, groups: Sequence[str]) -> list[PartitionLag]:
        return [
            PartitionLag("g", "t", partition, 100, 100 + lag, lag, lag, None, self.clock.now())
            for partition, lag in enumerate(self.lags)
            if "g" in groups
        ]


async def test_lag_monitor_keeps_a_bounded_history_of_group_totals() -> None:
    clock = ManualClock(NOW)
    source = ScriptedLag(clock)
    monitor = LagMonitor(Settings(app_id="g"), groups=["g", "idle"], source=source, clock=clock)
    for round_number in range(LAG_HISTORY_ROUNDS + 5):
        source.lags = (round_number, 1)
        clock.advance(timedelta(seconds=5))
        await monitor.sample_once()
    history = monitor.history()
    assert len(history) == LAG_HISTORY_ROUNDS
    assert history[-1] == (clock.now(), {"g": LAG_HISTORY_ROUNDS + 4 + 1})
    assert history[0][1] == {"g": 5 + 1}  # the oldest five rounds were dropped
    body = build_summary(
        now=clock.now(),
        today=clock.now().date(),
        dates=[],
        phases_of=lambda _day: [],
        lag=monitor,
        letters=None,
        alerts=None,
    )
    groups = StatusSummary.model_validate(body).lag
    assert groups is not None
    assert [(group.group, group.lag, len(group.history)) for group in groups] == [
        ("g", LAG_HISTORY_ROUNDS + 5, LAG_HISTORY_ROUNDS),
        ("idle", None, 0),
    ]
