"""A route delivering to real receivers on this machine: an HTTP server (webhook, Slack and
PagerDuty formats) and an SMTP server (aiosmtpd); retries, dead letters, permanent errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, DeadLetter, PhaseTrigger
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.notify import formats
from phaseflow.streams.notify.delivery import RouteDelivery
from phaseflow.streams.notify.install import Notifiers, build
from phaseflow.streams.notify.routes import RouteConfigError, RouteFilter
from phaseflow.streams.notify.senders import HttpSender, Sender, SmtpSender
from phaseflow.streams.notify.service import RouteNotifier
from phaseflow.streams.web.health import ReadinessCheck
from tests.fixtures.receivers import HttpReceiver, SmtpReceiver

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SETTINGS = Settings(topic_prefix="t", notify_retry_attempts=3, notify_retry_backoff_seconds=0.5)


def timeout_alert(severity: str = "warning") -> Alert:
    return Alert.model_validate(
        {
            "kind": "phase_timeout",
            "severity": severity,
            "subject": "2026-12-06:phase_2",
            "message": "phase 2 of 2026-12-06 hit its deadline with 1 processor(s) missing",
            "details": {"missing": ["odds_loader"]},
            "raised_at": T0,
        }
    )


def record(topic: str, value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=1,
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


def alert_record(alert: Alert, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return record(SETTINGS.topic(TopicName.ALERTS), encode(alert), offset)


class Route:
    """A RouteDelivery with its dead letters, pauses and outcomes visible."""

    def __init__(self, sender: Sender, route_filter: RouteFilter | None = None) -> None:
        self.letters: list[DeadLetter] = []
        self.pauses: list[float] = []
        self.registry = CollectorRegistry()
        self.outcomes = Counter("n", "n", ["route", "outcome"], registry=self.registry)
        self.delivery = RouteDelivery(
            SETTINGS,
            "test",
            sender,
            route_filter or RouteFilter(),
            dead_letter=self._letter,
            clock=ManualClock(T0),
            outcomes=self.outcomes,
            sleep=self._sleep,
        )

    async def _letter(self, _key: str, value: bytes) -> None:
        self.letters.append(DeadLetter.model_validate_json(value))

    async def _sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def count(self, outcome: str) -> float:
        value = self.registry.get_sample_value("n_total", {"route": "test", "outcome": outcome})
        return value or 0.0


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as server:
        yield server


def http(receiver: HttpReceiver, body: Any = formats.webhook_body) -> HttpSender:
    return HttpSender(receiver.url(), body, setting="PHASEFLOW_NOTIFY_WEBHOOK_URL", timeout=5)


async def test_timeout_alert_then_trigger_reach_slack_and_pagerduty(receiver: HttpReceiver) -> None:
    slack = http(receiver, formats.slack_body)
    pagerduty = HttpSender(
        receiver.url("/v2/enqueue"),
        partial(formats.pagerduty_body, routing_key="rk"),
        setting="PHASEFLOW_NOTIFY_PAGERDUTY_URL",
        timeout=5,
    )
    routes = [Route(slack), Route(pagerduty)]
    trigger = PhaseTrigger(
        game_date=date(2026, 12, 6),
        phase=3,
        reason="ready",
        rule="all",
        trigger_id="t",
        triggered_at=T0,
    )
    for route in routes:
        await route.delivery.sender.start()
        await route.delivery.handle(alert_record(timeout_alert()))
        await route.delivery.handle(
            record(SETTINGS.topic(TopicName.PHASE_TRIGGERS), encode(trigger))
        )
        await route.delivery.sender.stop()
    bodies = [entry.body for entry in receiver.received]
    assert bodies[0]["text"].startswith(":warning: *WARNING phase_timeout 2026-12-06:phase_2*")
    assert bodies[1]["text"].startswith(":white_check_mark: *RESOLVED phase_timeout")
    assert [(body["event_action"], body["dedup_key"]) for body in bodies[2:]] == [
        ("trigger", "phase_timeout:2026-12-06:phase_2"),
        ("resolve", "phase_timeout:2026-12-06:phase_2"),
    ]
    assert len(bodies) == 4  # validation_failed of phase 2 was never raised: no resolve


async def test_5xx_is_retried_with_growing_pauses_then_delivered(receiver: HttpReceiver) -> None:
    route = Route(http(receiver))
    receiver.fail(503, 502)
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert()))
    await route.delivery.sender.stop()
    assert len(receiver.failed) == 2
    assert [entry.body["key"] for entry in receiver.received] == [
        "phase_timeout:2026-12-06:phase_2"
    ]
    assert route.pauses == [0.5, 1.0]
    assert route.letters == []
    assert route.delivery.problem() is None


async def test_a_receiver_down_past_the_retries_dead_letters_the_alert(
    receiver: HttpReceiver,
) -> None:
    route = Route(http(receiver))
    receiver.fail(500, 500, 500)
    await route.delivery.sender.start()
    raised = timeout_alert()
    await route.delivery.handle(alert_record(raised, offset=7))
    await route.delivery.sender.stop()
    assert receiver.received == []
    [letter] = route.letters
    assert letter.source_topic == SETTINGS.topic(TopicName.ALERTS)
    assert (letter.partition, letter.offset, letter.attempts) == (1, 7, 3)
    assert letter.error.startswith("notifier route test: PHASEFLOW_NOTIFY_WEBHOOK_URL: HTTP 500")
    assert letter.value_bytes == encode(raised)  # replay sends back the alert itself
    assert route.count("dead_lettered") == 1
    # Not delivered, so not noise-controlled: a replay of the letter is delivered.
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(raised, offset=8))
    await route.delivery.sender.stop()
    assert len(receiver.received) == 1


async def test_a_closed_port_is_retried_then_dead_lettered() -> None:
    async with HttpReceiver() as gone:
        url = gone.url()
    route = Route(
        HttpSender(url, formats.webhook_body, setting="PHASEFLOW_NOTIFY_WEBHOOK_URL", timeout=5)
    )
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert()))
    await route.delivery.sender.stop()
    [letter] = route.letters
    assert "no answer" in letter.error
    assert letter.attempts == 3


async def test_a_4xx_is_not_retried_and_is_the_routes_problem(receiver: HttpReceiver) -> None:
    route = Route(http(receiver))
    receiver.fail(404)
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert()))
    assert route.pauses == []
    assert route.letters[0].attempts == 1
    problem = route.delivery.problem()
    assert problem is not None
    assert problem.startswith("PHASEFLOW_NOTIFY_WEBHOOK_URL: HTTP 404")
    # Fixed on the receiver's side: the next delivery clears the problem.
    await route.delivery.handle(alert_record(timeout_alert("critical")))
    await route.delivery.sender.stop()
    assert route.delivery.problem() is None


async def test_filtered_and_repeated_alerts_are_not_sent(receiver: HttpReceiver) -> None:
    route = Route(http(receiver), RouteFilter("critical"))
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert("warning")))
    await route.delivery.handle(alert_record(timeout_alert("critical")))
    await route.delivery.handle(alert_record(timeout_alert("critical")))
    await route.delivery.sender.stop()
    assert len(receiver.received) == 1
    assert (route.count("filtered"), route.count("repeat"), route.count("sent_trigger")) == (
        1,
        1,
        1,
    )


async def test_a_record_that_is_no_alert_is_dead_lettered_with_why(receiver: HttpReceiver) -> None:
    route = Route(http(receiver))
    await route.delivery.handle(record(SETTINGS.topic(TopicName.ALERTS), b"{not json"))
    [letter] = route.letters
    assert letter.error_type == "InvalidAlert"
    assert "not valid JSON" in letter.error
    assert base64.b64decode(letter.value) == b"{not json"


async def test_email_reaches_a_real_smtp_server() -> None:
    async with SmtpReceiver() as smtp:
        sender = SmtpSender(
            smtp.url,
            partial(formats.email_message, sender="pf@localhost", recipients=("oncall@localhost",)),
            timeout=5,
        )
        route = Route(sender)
        assert sender.problem() is None
        await route.delivery.handle(alert_record(timeout_alert("critical")))
        [mail] = smtp.mails
        assert mail["Subject"] == "[phaseflow] CRITICAL phase_timeout 2026-12-06:phase_2"
        assert mail["To"] == "oncall@localhost"
        assert "odds_loader" in mail.get_payload()


async def test_smtp_temporary_refusal_is_retried_and_permanent_one_is_not() -> None:
    async with SmtpReceiver() as smtp:
        sender = SmtpSender(
            smtp.url,
            partial(formats.email_message, sender="pf@localhost", recipients=("oncall@localhost",)),
            timeout=5,
        )
        route = Route(sender)
        smtp.refuse("451 try again later")
        await route.delivery.handle(alert_record(timeout_alert("warning")))
        assert len(smtp.mails) == 1
        assert route.pauses == [0.5]
        smtp.refuse("554 rejected")
        await route.delivery.handle(alert_record(timeout_alert("critical")))
        assert len(smtp.mails) == 1
        [letter] = route.letters
        assert "554" in letter.error
        assert letter.attempts == 1


def test_routes_are_built_from_settings_and_wrong_ones_name_the_setting() -> None:
    def notifiers(**fields: Any) -> list[str]:
        settings = Settings(topic_prefix="t", **fields)

        async def nowhere(_key: str, _value: bytes) -> None:
            raise AssertionError("not called")

        built = build(
            settings, dead_letter=nowhere, clock=ManualClock(T0), registry=CollectorRegistry()
        )
        return [route.route for route in built.routes]

    assert notifiers() == []
    assert notifiers(
        notify_slack_url="http://127.0.0.1:1/s",
        notify_pagerduty_routing_key="rk",
        notify_routes="pagerduty=critical",
    ) == ["slack", "pagerduty"]
    with pytest.raises(RouteConfigError, match="names route\\(s\\) email whose destination"):
        notifiers(notify_slack_url="http://x/s", notify_routes="email=critical")
    with pytest.raises(RouteConfigError, match="PHASEFLOW_NOTIFY_EMAIL_TO"):
        notifiers(notify_smtp_url="smtp://127.0.0.1")
    settings = Settings(topic_prefix="t", notify_webhook_url="ftp://x/hook")
    assert settings.notify_webhook_url is not None
    assert "ftp" not in repr(settings.notify_webhook_url)  # a secret: never printed
    problem = http_problem(settings.notify_webhook_url.get_secret_value())
    assert problem == "PHASEFLOW_NOTIFY_WEBHOOK_URL is not an http(s) URL"


def http_problem(url: str) -> str | None:
    return HttpSender(
        url, formats.webhook_body, setting="PHASEFLOW_NOTIFY_WEBHOOK_URL", timeout=1
    ).problem()


async def test_a_4xx_makes_the_worker_not_ready_with_the_setting_named(
    receiver: HttpReceiver,
) -> None:
    route = Route(http(receiver))
    notifiers = Notifiers((RouteNotifier(SETTINGS, route.delivery),))

    async def reachable() -> None:
        return None

    check = ReadinessCheck(
        probe=reachable,
        assigned_partitions=lambda: 4,
        recovery_pending=lambda: None,
        lag=lambda: None,
        max_lag_messages=100,
        problems=notifiers.problems,
    )
    assert (await check.report()).ready
    receiver.fail(410)
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert()))
    await route.delivery.sender.stop()
    report = await check.report()
    assert not report.ready
    [reason] = report.reasons
    assert reason.startswith("notifier route test: PHASEFLOW_NOTIFY_WEBHOOK_URL: HTTP 410")


async def test_a_resolve_from_a_trigger_is_never_dead_lettered(receiver: HttpReceiver) -> None:
    route = Route(http(receiver))
    await route.delivery.sender.start()
    await route.delivery.handle(alert_record(timeout_alert()))
    receiver.fail(500, 500, 500)
    trigger = PhaseTrigger(
        game_date=date(2026, 12, 6),
        phase=3,
        reason="ready",
        rule="all",
        trigger_id="t",
        triggered_at=T0,
    )
    await route.delivery.handle(record(SETTINGS.topic(TopicName.PHASE_TRIGGERS), encode(trigger)))
    await route.delivery.sender.stop()
    # A replayed trigger would start phase 3 again downstream.
    assert route.letters == []
    assert route.count("resolve_not_sent") == 1
    assert len(receiver.failed) == 3
