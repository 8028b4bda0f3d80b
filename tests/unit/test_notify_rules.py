"""Notifier rules without receivers: route filters, resolves, noise control, message bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from phaseflow.models.events import Alert, PhaseTrigger
from phaseflow.streams.notify import formats, notices
from phaseflow.streams.notify.noise import NoiseControl
from phaseflow.streams.notify.notices import Notice
from phaseflow.streams.notify.routes import RouteConfigError, RouteFilter, parse_filters

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def alert(kind: str = "phase_timeout", severity: str = "warning", **details: object) -> Alert:
    return Alert.model_validate(
        {
            "kind": kind,
            "severity": severity,
            "subject": "2026-12-06:phase_2",
            "message": "phase 2 hit its deadline",
            "details": details,
            "raised_at": T0,
        }
    )


def notice(severity: str = "warning", key: str = "phase_timeout:x") -> Notice:
    return Notice("trigger", key, "phase_timeout", severity, "x", "m", T0)


def test_filters_parse_severity_and_kinds() -> None:
    filters = parse_filters(("pagerduty=critical:phase_timeout+consumer_lag", "slack=info"))
    assert filters["pagerduty"] == RouteFilter(
        "critical", frozenset({"phase_timeout", "consumer_lag"})
    )
    assert filters["pagerduty"].accepts("phase_timeout", "critical")
    assert not filters["pagerduty"].accepts("phase_timeout", "warning")
    assert not filters["pagerduty"].accepts("sla_breach", "critical")
    assert filters["slack"].accepts("sla_breach", "info")
    assert not RouteFilter().accepts("dlq", "info")  # default: warning and above


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("teams=warning", "route must be one of"),
        ("slack=loud", "min_severity must be one of"),
        ("slack=warning:phase_timout", "unknown alert kind(s) phase_timout"),
        ("slack", "route must be one of"),
    ],
)
def test_a_wrong_filter_names_the_setting(spec: str, says: str) -> None:
    with pytest.raises(RouteConfigError, match="PHASEFLOW_NOTIFY_ROUTES") as caught:
        parse_filters((spec,))
    assert says in str(caught.value)


def test_lag_back_to_ok_is_a_resolve_and_stall_a_trigger() -> None:
    ok = notices.from_alert(alert("consumer_lag", "info", status="OK"))
    stall = notices.from_alert(alert("consumer_lag", "critical", status="STALL"))
    assert (ok.action, stall.action) == ("resolve", "trigger")
    assert ok.key == stall.key == "consumer_lag:2026-12-06:phase_2"


@pytest.mark.parametrize(("reason", "resolves"), [("ready", 2), ("rerun", 2), ("timeout", 0)])
def test_a_trigger_resolves_the_previous_phase_unless_it_fired_at_the_deadline(
    reason: str, resolves: int
) -> None:
    trigger = PhaseTrigger(
        game_date=date(2026, 12, 6),
        phase=3,
        reason=reason,  # type: ignore[arg-type]
        rule="all",
        trigger_id="t",
        triggered_at=T0,
    )
    found = notices.from_trigger(trigger)
    assert len(found) == resolves
    if resolves:
        assert {item.key for item in found} == {
            "phase_timeout:2026-12-06:phase_2",
            "validation_failed:2026-12-06:phase_2",
        }
        assert {item.action for item in found} == {"resolve"}
        # The timeout alert of phase 2 has exactly this key: the resolve closes it.
        assert alert().key in {item.key for item in found}


def test_same_key_once_per_repeat_after_unless_severity_rises() -> None:
    noise = NoiseControl(repeat_after=timedelta(hours=1), max_per_hour=100)
    first = notice()
    assert noise.verdict(first, T0) == "send"
    noise.sent(first, T0)
    assert noise.verdict(first, T0 + timedelta(minutes=59)) == "repeat"
    assert noise.verdict(notice("critical"), T0 + timedelta(minutes=1)) == "send"
    assert noise.verdict(first, T0 + timedelta(hours=1)) == "send"
    assert noise.verdict(notice(key="phase_timeout:other"), T0) == "send"


def test_a_resolve_goes_only_where_the_alert_went_and_only_once() -> None:
    noise = NoiseControl(repeat_after=timedelta(hours=1), max_per_hour=100)
    resolve = Notice("resolve", "phase_timeout:x", "phase_timeout", "info", "x", "ok", T0)
    assert noise.verdict(resolve, T0) == "not_open"
    noise.sent(notice(), T0)
    assert noise.verdict(resolve, T0) == "send"
    noise.sent(resolve, T0)
    assert noise.verdict(resolve, T0) == "not_open"
    # Resolved: the same alert raised again is news, within repeat_after or not.
    assert noise.verdict(notice(), T0 + timedelta(minutes=1)) == "send"


def test_rate_limit_drops_then_summarises_when_there_is_room() -> None:
    noise = NoiseControl(repeat_after=timedelta(hours=1), max_per_hour=2)
    for index in range(2):
        sent = notice(key=f"k{index}")
        assert noise.verdict(sent, T0) == "send"
        noise.sent(sent, T0)
    assert [noise.verdict(notice(key=f"d{index}"), T0) for index in range(3)] == [
        "rate_limited"
    ] * 3
    assert noise.summary(T0 + timedelta(minutes=30)) is None  # still no room
    summary = noise.summary(T0 + timedelta(hours=1))
    assert summary is not None
    assert summary.action == "summary"
    assert "3 alert(s) were not sent" in summary.message
    assert "phase_timeout x3" in summary.message
    assert noise.summary(T0 + timedelta(hours=1)) is None  # counted once


def test_pagerduty_trigger_and_resolve_share_the_alert_key_as_dedup_key() -> None:
    raised = notices.from_alert(alert("consumer_lag", "critical", status="STALL"))
    cleared = notices.from_alert(alert("consumer_lag", "info", status="OK"))
    trigger = formats.pagerduty_body(raised, "rk")
    resolve = formats.pagerduty_body(cleared, "rk")
    assert trigger["event_action"] == "trigger"
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": raised.key}
    assert trigger["dedup_key"] == raised.key
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "phaseflow"


def test_slack_and_mail_carry_title_and_message() -> None:
    raised = notices.from_alert(alert(severity="critical"))
    slack = formats.slack_body(raised)
    assert slack["text"].startswith(":rotating_light: *CRITICAL phase_timeout 2026-12-06:phase_2*")
    assert "phase 2 hit its deadline" in slack["text"]
    mail = formats.email_message(raised, "from@x", ("a@x", "b@x"))
    assert mail["Subject"] == "[phaseflow] CRITICAL phase_timeout 2026-12-06:phase_2"
    assert mail["To"] == "a@x, b@x"
    assert "phase 2 hit its deadline" in mail.get_content()
