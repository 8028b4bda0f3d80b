"""``install(ctx)``: one :class:`RouteNotifier` per configured route, run by the worker.

A route is configured when its destination is set (``PHASEFLOW_NOTIFY_WEBHOOK_URL``,
``_SLACK_URL``, ``_PAGERDUTY_ROUTING_KEY``, ``_SMTP_URL``); with none, nothing is installed.
Dead letters go through the app's side producer, so the notifiers stop before it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.monitoring.install import monitoring_clock
from phaseflow.streams.notify import formats
from phaseflow.streams.notify.delivery import DeadLetterSink, RouteDelivery
from phaseflow.streams.notify.quiet import parse_quiet_hours
from phaseflow.streams.notify.routes import RouteConfigError, RouteFilter, parse_filters
from phaseflow.streams.notify.senders import HttpSender, Sender, SmtpSender
from phaseflow.streams.notify.service import RouteNotifier

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from phaseflow.streams.core.clock import Clock
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)
_START_RETRY_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Notifiers:
    """The worker's route notifiers, for ``/ready``."""

    routes: tuple[RouteNotifier, ...]

    def problems(self) -> list[str]:
        """One line per route that cannot deliver."""
        return [
            f"notifier route {notifier.route}: {problem}"
            for notifier in self.routes
            if (problem := notifier.problem()) is not None
        ]


def senders(settings: Settings) -> dict[str, Sender]:
    """A sender per route whose destination is set."""
    timeout = settings.notify_timeout_seconds
    found: dict[str, Sender] = {}
    if settings.notify_webhook_url is not None:
        found["webhook"] = HttpSender(
            settings.notify_webhook_url.get_secret_value(),
            formats.webhook_body,
            setting="PHASEFLOW_NOTIFY_WEBHOOK_URL",
            timeout=timeout,
        )
    if settings.notify_slack_url is not None:
        found["slack"] = HttpSender(
            settings.notify_slack_url.get_secret_value(),
            formats.slack_body,
            setting="PHASEFLOW_NOTIFY_SLACK_URL",
            timeout=timeout,
        )
    if settings.notify_pagerduty_routing_key is not None:
        key = settings.notify_pagerduty_routing_key.get_secret_value()
        found["pagerduty"] = HttpSender(
            settings.notify_pagerduty_url,
            partial(formats.pagerduty_body, routing_key=key),
            setting="PHASEFLOW_NOTIFY_PAGERDUTY_URL/_ROUTING_KEY",
            timeout=timeout,
        )
    if settings.notify_smtp_url is not None:
        if not settings.notify_email_to:
            raise RouteConfigError(
                "PHASEFLOW_NOTIFY_SMTP_URL is set but PHASEFLOW_NOTIFY_EMAIL_TO names no recipient"
            )
        found["email"] = SmtpSender(
            settings.notify_smtp_url.get_secret_value(),
            partial(
                formats.email_message,
                sender=settings.notify_email_from,
                recipients=settings.notify_email_to,
            ),
            timeout=timeout,
        )
    return found


def check_unused(settings: Settings) -> None:
    """With no destination set, routing settings would be ignored without a word: say so."""
    for setting, value in (
        ("PHASEFLOW_NOTIFY_ROUTES", settings.notify_routes),
        ("PHASEFLOW_NOTIFY_QUIET_HOURS", settings.notify_quiet_hours),
    ):
        if value:
            raise RouteConfigError(
                f"{setting} is set but no notifier destination is (PHASEFLOW_NOTIFY_SLACK_URL, "
                "_WEBHOOK_URL, _PAGERDUTY_ROUTING_KEY or _SMTP_URL; docs/alerting.md)"
            )


def build(
    settings: Settings,
    *,
    dead_letter: DeadLetterSink,
    clock: Clock,
    registry: CollectorRegistry,
) -> Notifiers:
    """The notifiers of every configured route; :class:`RouteConfigError` names a wrong
    setting (a filter for a route without destination, a bad filter entry)."""
    filters = parse_filters(settings.notify_routes)
    quiet_hours = parse_quiet_hours(settings.notify_quiet_hours, settings.pipeline_timezone)
    found = senders(settings)
    for setting, named in (
        ("PHASEFLOW_NOTIFY_ROUTES", filters),
        ("PHASEFLOW_NOTIFY_QUIET_HOURS", quiet_hours),
    ):
        unset = sorted(set(named) - set(found))
        if unset:
            raise RouteConfigError(
                f"{setting} names route(s) {', '.join(unset)} whose destination is "
                "not set (docs/alerting.md)"
            )
    outcomes = Counter(
        "phaseflow_notifications",
        "Alerts per notifier route and outcome (sent_trigger, sent_resolve, sent_summary, "
        "filtered, held, held_cancelled, repeat, not_open, rate_limited, dead_lettered, "
        "resolve_not_sent).",
        ["route", "outcome"],
        registry=registry,
    )
    return Notifiers(
        tuple(
            RouteNotifier(
                settings,
                RouteDelivery(
                    settings,
                    route,
                    sender,
                    filters.get(route, RouteFilter()),
                    dead_letter=dead_letter,
                    clock=clock,
                    outcomes=outcomes,
                    quiet_hours=quiet_hours.get(route),
                ),
            )
            for route, sender in found.items()
        )
    )


def install(ctx: FeatureContext) -> Notifiers | None:
    """Run the configured routes in the worker (started with the app, stopped before its side
    producer); None when no route is configured."""
    if not senders(ctx.settings):
        check_unused(ctx.settings)
        return None

    async def dead_letter(key: str, value: bytes) -> None:
        await ctx.side_publisher.send(TopicName.DEAD_LETTERS, key, value)

    notifiers = build(
        ctx.settings,
        dead_letter=dead_letter,
        # repeat_after and the hourly limit are wall time, also under a sped-up pipeline clock.
        clock=monitoring_clock(ctx),
        registry=ctx.metrics.registry,
    )
    ctx.side_publisher_users.extend(notifiers.routes)

    @ctx.app.task  # type: ignore[untyped-decorator]
    async def _start_notifiers() -> None:
        for notifier in notifiers.routes:
            # A broker that is down at start must not crash the worker: retry until it answers.
            while True:
                try:
                    await notifier.start()
                except Exception as error:  # noqa: BLE001
                    log.warning(
                        "notifier route %s could not start (%r); retrying in %.0f s",
                        notifier.route,
                        error,
                        _START_RETRY_SECONDS,
                    )
                    await asyncio.sleep(_START_RETRY_SECONDS)
                else:
                    log.info("notifier route %s consuming as %s", notifier.route, notifier.group)
                    break

    return notifiers
