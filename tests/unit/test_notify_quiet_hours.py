"""Quiet hours of a route on a virtual clock: held below critical, critical through, a resolve
cancels, held alerts delivered when the window ends; the setting parsed with one-line errors."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, DeadLetter
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.notify.delivery import RouteDelivery
from phaseflow.streams.notify.install import build, check_unused
from phaseflow.streams.notify.notices import Notice
from phaseflow.streams.notify.quiet import QuietHours, parse_quiet_hours
from phaseflow.streams.notify.routes import RouteConfigError, RouteFilter
from phaseflow.streams.notify.senders import DeliveryError
from phaseflow.streams.notify.service import RouteNotifier

NEW_YORK = ZoneInfo("America/New_York")
#: 23:00 in New York (EST, UTC-5): inside 22:00-07:00.
NIGHT = datetime(2026, 12, 8, 4, 0, tzinfo=UTC)
SETTINGS = Settings(topic_prefix="t", notify_retry_attempts=2, notify_retry_backoff_seconds=0.5)


class RecordingSender:
    """A receiver that takes everything; quiet hours are about when, not how."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []
        self.down = False

    def problem(self) -> str | None:
        return None

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def send(self, notice: Notice) -> None:
        if self.down:
            raise DeliveryError("PHASEFLOW_NOTIFY_SLACK_URL: HTTP 503", permanent=False)
        self.sent.append(notice)


def alert_record(value: bytes, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=SETTINGS.topic(TopicName.ALERTS),
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def alert(subject: str, severity: str = "warning", kind: str = "phase_timeout") -> Alert:
    details = {"status": "OK"} if severity == "ok" else {}
    return Alert.model_validate(
        {
            "kind": kind,
            "severity": "info" if severity == "ok" else severity,
            "subject": subject,
            "message": f"{kind} {subject}",
            "details": details,
            "raised_at": NIGHT,
        }
    )


class QuietRoute:
    def __init__(self, start: time = time(22), end: time = time(7)) -> None:
        self.clock = ManualClock(NIGHT)
        self.sender = RecordingSender()
        self.letters: list[DeadLetter] = []
        self.registry = CollectorRegistry()
        outcomes = Counter("n", "n", ["route", "outcome"], registry=self.registry)
        self.delivery = RouteDelivery(
            SETTINGS,
            "slack",
            self.sender,
            RouteFilter("info"),
            dead_letter=self._letter,
            clock=self.clock,
            outcomes=outcomes,
            quiet_hours=QuietHours(start, end, NEW_YORK),
        )

    async def _letter(self, _key: str, value: bytes) -> None:
        self.letters.append(DeadLetter.model_validate_json(value))

    async def raise_(self, one: Alert) -> None:
        await self.delivery.handle(alert_record(encode(one)))

    def sent(self) -> list[tuple[str, str, str]]:
        return [(n.action, n.key, n.severity) for n in self.sender.sent]

    def count(self, outcome: str) -> float:
        value = self.registry.get_sample_value("n_total", {"route": "slack", "outcome": outcome})
        return value or 0.0


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        ("21:59", False),
        ("22:00", True),
        ("23:59", True),
        ("00:00", True),
        ("06:59", True),
        ("07:00", False),
        ("12:00", False),
    ],
)
def test_a_window_across_midnight(local: str, quiet: bool) -> None:
    window = QuietHours(time(22), time(7), NEW_YORK)
    hours, minutes = map(int, local.split(":"))
    moment = datetime(2026, 12, 8, hours, minutes, tzinfo=NEW_YORK)
    assert window.active(moment) is quiet


def test_a_window_within_one_day_is_read_in_the_pipeline_zone() -> None:
    window = QuietHours(time(12), time(13), NEW_YORK)
    # 17:30 UTC is 12:30 in New York in December, 13:30 in July (EDT).
    assert window.active(datetime(2026, 12, 8, 17, 30, tzinfo=UTC))
    assert not window.active(datetime(2026, 7, 8, 17, 30, tzinfo=UTC))


async def test_alerts_below_critical_are_held_until_the_quiet_hours_end() -> None:
    route = QuietRoute()
    await route.raise_(alert("2026-12-07:phase_1", "warning"))
    route.clock.advance(timedelta(hours=1))
    await route.raise_(alert("2026-12-07:phase_2", "info"))
    await route.raise_(alert("2026-12-07:phase_1", "warning"))
    await route.delivery.release_held()
    assert route.sender.sent == []
    assert (route.delivery.held(), route.count("held")) == (2, 3)

    route.clock.set(datetime(2026, 12, 8, 7, 0, tzinfo=NEW_YORK))
    await route.delivery.release_held()
    assert route.sent() == [
        ("trigger", "phase_timeout:2026-12-07:phase_1", "warning"),
        ("trigger", "phase_timeout:2026-12-07:phase_2", "info"),
    ]
    assert route.delivery.held() == 0
    await route.delivery.release_held()
    assert len(route.sender.sent) == 2


async def test_critical_passes_through_quiet_hours() -> None:
    route = QuietRoute()
    await route.raise_(alert("2026-12-07:phase_3", "critical"))
    assert route.sent() == [("trigger", "phase_timeout:2026-12-07:phase_3", "critical")]
    assert route.delivery.held() == 0


async def test_a_held_alert_keeps_its_highest_severity() -> None:
    route = QuietRoute()
    await route.raise_(alert("events", "warning", kind="consumer_lag"))
    await route.raise_(alert("events", "info", kind="consumer_lag"))
    route.clock.set(datetime(2026, 12, 8, 8, 0, tzinfo=NEW_YORK))
    await route.delivery.release_held()
    assert route.sent() == [("trigger", "consumer_lag:events", "warning")]


async def test_a_resolve_cancels_the_held_alert() -> None:
    route = QuietRoute()
    await route.raise_(alert("events", "warning", kind="consumer_lag"))
    await route.raise_(alert("events", "ok", kind="consumer_lag"))
    route.clock.set(datetime(2026, 12, 8, 8, 0, tzinfo=NEW_YORK))
    await route.delivery.release_held()
    # Never sent, so no resolve either: the receiver saw nothing of it.
    assert route.sender.sent == []
    assert (route.count("held_cancelled"), route.count("not_open")) == (1, 1)


async def test_a_resolve_of_an_alert_sent_before_the_quiet_hours_is_sent() -> None:
    route = QuietRoute()
    route.clock.set(datetime(2026, 12, 7, 21, 0, tzinfo=NEW_YORK))
    await route.raise_(alert("events", "warning", kind="consumer_lag"))
    route.clock.set(datetime(2026, 12, 7, 23, 0, tzinfo=NEW_YORK))
    await route.raise_(alert("events", "warning", kind="consumer_lag"))
    await route.raise_(alert("events", "ok", kind="consumer_lag"))
    assert route.sent() == [
        ("trigger", "consumer_lag:events", "warning"),
        ("resolve", "consumer_lag:events", "info"),
    ]


async def test_a_held_alert_that_cannot_be_delivered_is_dead_lettered() -> None:
    route = QuietRoute()
    await route.raise_(alert("2026-12-07:phase_1"))
    route.sender.down = True
    route.clock.set(datetime(2026, 12, 8, 7, 30, tzinfo=NEW_YORK))
    await route.delivery.release_held()
    assert [(letter.error_type, letter.offset) for letter in route.letters] == [
        ("NotifierDeliveryFailed", 7)
    ]
    assert route.delivery.held() == 0


def test_quiet_hours_are_parsed_per_route() -> None:
    windows = parse_quiet_hours(("slack=22:00-07:00", " email = 12:30-13:00"), "UTC")
    assert windows["slack"] == QuietHours(time(22), time(7), ZoneInfo("UTC"))
    assert windows["email"] == QuietHours(time(12, 30), time(13), ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("sms=22:00-07:00", "route must be one of"),
        ("slack 22:00-07:00", "route must be one of"),
        ("slack=22-07", "times HH:MM"),
        ("slack=22:00", "times HH:MM"),
        ("slack=24:00-07:00", "times HH:MM"),
        ("slack=22:00-07:60", "times HH:MM"),
        ("slack=07:00-07:00", "same time"),
    ],
)
def test_a_wrong_entry_is_one_line_naming_the_setting(spec: str, says: str) -> None:
    with pytest.raises(RouteConfigError) as raised:
        parse_quiet_hours((spec,), "UTC")
    message = str(raised.value)
    assert message.startswith(f"PHASEFLOW_NOTIFY_QUIET_HOURS entry {spec!r}")
    assert says in message
    assert "\n" not in message


def test_a_route_named_twice_or_a_bad_zone_is_refused() -> None:
    with pytest.raises(RouteConfigError, match="named twice"):
        parse_quiet_hours(("slack=22:00-07:00", "slack=23:00-06:00"), "UTC")
    with pytest.raises(RouteConfigError, match="PHASEFLOW_PIPELINE_TIMEZONE 'Mars/Base'"):
        parse_quiet_hours(("slack=22:00-07:00",), "Mars/Base")


def test_build_refuses_quiet_hours_of_a_route_without_destination() -> None:
    settings = Settings(
        topic_prefix="t",
        notify_slack_url="http://127.0.0.1:9/hook",
        notify_quiet_hours="email=22:00-07:00",
    )

    async def letter(_key: str, _value: bytes) -> None:
        raise AssertionError("no dead letter expected")

    with pytest.raises(RouteConfigError, match="PHASEFLOW_NOTIFY_QUIET_HOURS names route"):
        build(settings, dead_letter=letter, clock=ManualClock(NIGHT), registry=CollectorRegistry())


def test_quiet_hours_without_any_destination_are_refused() -> None:
    check_unused(Settings(topic_prefix="t"))
    with pytest.raises(RouteConfigError, match="PHASEFLOW_NOTIFY_QUIET_HOURS is set but no"):
        check_unused(Settings(topic_prefix="t", notify_quiet_hours="slack=22:00-07:00"))


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_NOTIFY_QUIET_HOURS", "slack=22:00-07:00, email=23:00-06:00")
    assert Settings().notify_quiet_hours == ("slack=22:00-07:00", "email=23:00-06:00")


async def test_commits_stop_before_the_first_held_alert_until_it_is_sent() -> None:
    """A held alert's offset is not committed past, so a restart during the quiet hours reads
    it again instead of losing it."""
    route = QuietRoute()
    notifier = RouteNotifier(SETTINGS, route.delivery)
    partition = TopicPartition(SETTINGS.topic(TopicName.ALERTS), 0)
    critical = alert_record(encode(alert("2026-12-07:phase_1", "critical")), offset=10)
    await route.delivery.handle(critical)
    assert notifier._commit_to(partition, critical) == 11  # sent at once: committed past
    held = alert_record(encode(alert("2026-12-07:phase_2")), offset=12)
    await route.delivery.handle(held)
    later = alert_record(encode(alert("2026-12-07:phase_1", "critical")), offset=15)
    await route.delivery.handle(later)
    assert route.delivery.held_from(partition.topic, 0) == 12
    assert notifier._commit_to(partition, held) == 12
    assert notifier._commit_to(partition, later) == 12  # not past the held one
    assert route.delivery.held_from(partition.topic, 1) is None

    route.clock.set(NIGHT + timedelta(hours=9))  # 08:00 in New York: the window is over
    await route.delivery.release_held()
    assert route.delivery.held_from(partition.topic, 0) is None
    assert notifier._commit_to(partition, later) == 16


async def test_stopping_with_held_alerts_says_they_are_read_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = QuietRoute()
    await route.raise_(alert("2026-12-07:phase_1"))
    await route.raise_(alert("2026-12-07:phase_2"))
    with caplog.at_level(logging.WARNING, logger="phaseflow.streams.notify.service"):
        await RouteNotifier(SETTINGS, route.delivery).stop()
    assert "notifier route slack stops with 2 alert(s) held" in caplog.text
    assert "read again at the next start" in caplog.text
