"""What one route does with one record: filter, quiet hours, noise control, delivery with
retries, and the dead-letter topic when delivery keeps failing (module docstring of
phaseflow.streams.notify.service).

During the route's quiet hours an alert below ``critical`` is held, one per alert key (the
latest, at the highest severity seen), and delivered on its own when the quiet hours end, as if
it had just arrived: one message per key keeps PagerDuty's ``dedup_key`` and the later resolve
working, where one digest message could not be resolved. A resolve cancels the held alert of its
key. Held alerts live in memory: a worker stopped during quiet hours logs how many it drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final

from aiokafka import ConsumerRecord
from prometheus_client import Counter

from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, DeadLetter, PhaseTrigger
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.notify import notices
from phaseflow.streams.notify.noise import NoiseControl
from phaseflow.streams.notify.notices import Notice
from phaseflow.streams.notify.quiet import QuietHours
from phaseflow.streams.notify.routes import SEVERITY_RANK, RouteFilter
from phaseflow.streams.notify.senders import DeliveryError, Sender

log = logging.getLogger(__name__)

#: Sends a dead letter (key, encoded DeadLetter) to the dead-letter topic.
DeadLetterSink = Callable[[str, bytes], Awaitable[None]]
_MAX_BACKOFF_SECONDS: Final = 60.0
#: Passes through quiet hours: it needs someone now.
_URGENT: Final = "critical"


class RouteDelivery:
    """Turns records of the alerts and trigger topics into messages of one route."""

    def __init__(
        self,
        settings: Settings,
        route: str,
        sender: Sender,
        route_filter: RouteFilter,
        *,
        dead_letter: DeadLetterSink,
        clock: Clock,
        outcomes: Counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        quiet_hours: QuietHours | None = None,
    ) -> None:
        self.route = route
        self.sender = sender
        self._settings = settings
        self._filter = route_filter
        self._dead_letter = dead_letter
        self._clock = clock
        self._outcomes = outcomes
        self._sleep = sleep
        self._noise = NoiseControl(
            repeat_after=timedelta(seconds=settings.notify_repeat_after_seconds),
            max_per_hour=settings.notify_max_per_hour,
        )
        self._triggers_topic = settings.topic(TopicName.PHASE_TRIGGERS)
        self._problem: str | None = sender.problem()
        self._quiet_hours = quiet_hours
        #: Alert key -> the alert held during quiet hours and the record it came from (for the
        #: dead-letter topic should its delayed delivery fail).
        self._held: dict[str, tuple[Notice, ConsumerRecord[bytes, bytes]]] = {}

    def problem(self) -> str | None:
        """Why this route cannot deliver (configuration, a permanent failure), or None."""
        return self._problem

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Deliver what ``record`` means to this route, or dead-letter it; raises only when the
        dead letter cannot be written (the record must then be read again)."""
        try:
            found = self._notices(record)
        except ValueError as error:
            await self._to_dead_letters(record, f"not an alert: {error}", "InvalidAlert", 1)
            return
        for notice in found:
            if notice.action == "trigger" and not self._filter.accepts(
                notice.kind, notice.severity
            ):
                self._outcomes.labels(self.route, "filtered").inc()
                continue
            if notice.action == "resolve" and self._held.pop(notice.key, None) is not None:
                # Never sent, so nothing to resolve at the receiver unless it was open before.
                self._outcomes.labels(self.route, "held_cancelled").inc()
            elif self._hold(notice, record):
                continue
            await self._send(notice, record)

    async def release_held(self) -> None:
        """Once the quiet hours are over: deliver every held alert, oldest first."""
        if not self._held or self._quiet_now():
            return
        log.info(
            "notifier route %s: quiet hours over, sending %d held alert(s)",
            self.route,
            len(self._held),
        )
        for key, (notice, record) in sorted(self._held.items(), key=lambda item: item[1][0].at):
            await self._send(notice, record)
            # Only now: when the dead-letter topic is down _send raises, and what is still
            # held is tried again on the next poll.
            del self._held[key]

    def held(self) -> int:
        """How many alerts are held for the end of the quiet hours."""
        return len(self._held)

    def held_from(self, topic: str, partition: int) -> int | None:
        """The lowest offset of a held record of that partition, which its committed offset
        must not pass (so a restart reads the held alerts again); None when none is held."""
        offsets = [
            record.offset
            for _, record in self._held.values()
            if record.topic == topic and record.partition == partition
        ]
        return min(offsets, default=None)

    def _quiet_now(self) -> bool:
        return self._quiet_hours is not None and self._quiet_hours.active(self._clock.now())

    def _hold(self, notice: Notice, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Hold ``notice`` when the route is quiet and it can wait; whether it was held."""
        if notice.action != "trigger" or notice.severity == _URGENT or not self._quiet_now():
            return False
        previous = self._held.get(notice.key)
        if (
            previous is None
            or SEVERITY_RANK[notice.severity] >= SEVERITY_RANK[previous[0].severity]
        ):
            self._held[notice.key] = (notice, record)
        self._outcomes.labels(self.route, "held").inc()
        return True

    async def _send(self, notice: Notice, record: ConsumerRecord[bytes, bytes]) -> None:
        """Noise control, delivery, and the dead-letter topic when delivery fails."""
        verdict = self._noise.verdict(notice, self._clock.now())
        if verdict != "send":
            self._outcomes.labels(self.route, verdict).inc()
            return
        failure = await self._deliver(notice)
        if failure is None:
            self._noise.sent(notice, self._clock.now())
            return
        if record.topic == self._triggers_topic:
            # A replayed trigger would start the phase again downstream: never dead-letter
            # one. The alert stays open at the receiver; said loudly, counted.
            self._outcomes.labels(self.route, "resolve_not_sent").inc()
            log.error(
                "notifier route %s: the resolve of %s was not sent (%s); resolve it by hand",
                self.route,
                notice.key,
                failure,
            )
            return
        await self._to_dead_letters(
            record, str(failure), "NotifierDeliveryFailed", failure.attempts
        )

    async def send_summary(self) -> None:
        """Send the summary of what the rate limit dropped, once there is room."""
        summary = self._noise.summary(self._clock.now())
        if summary is None:
            return
        error = await self._deliver(summary)
        if error is None:
            self._noise.sent(summary, self._clock.now())
        else:
            log.error("notifier route %s: the summary was not sent: %s", self.route, error)

    def _notices(self, record: ConsumerRecord[bytes, bytes]) -> list[Notice]:
        if record.value is None:
            raise ValueError("empty record")
        if record.topic == self._triggers_topic:
            return notices.from_trigger(decode(PhaseTrigger, record.value))
        return [notices.from_alert(decode(Alert, record.value))]

    async def _deliver(self, notice: Notice) -> DeliveryError | None:
        """None once delivered; the last error when retries are used up or it is permanent."""
        attempts = self._settings.notify_retry_attempts
        pause = self._settings.notify_retry_backoff_seconds
        for attempt in range(1, attempts + 1):
            try:
                await self.sender.send(notice)
            except DeliveryError as error:
                error.attempts = attempt
                if error.permanent:
                    if self._problem != str(error):
                        # One line naming the setting; the traceback would only add aiohttp's.
                        log.error(  # noqa: TRY400
                            "notifier route %s: %s (not retried)", self.route, error
                        )
                    self._problem = str(error)
                    return error
                if attempt == attempts:
                    return error
                log.warning(
                    "notifier route %s: attempt %d/%d failed (%s); retrying in %.1f s",
                    self.route,
                    attempt,
                    attempts,
                    error,
                    pause,
                )
                await self._sleep(pause)
                pause = min(pause * 2, _MAX_BACKOFF_SECONDS)
            else:
                self._outcomes.labels(self.route, f"sent_{notice.action}").inc()
                self._problem = self.sender.problem()
                return None
        raise AssertionError("unreachable: the loop returns on its last attempt")

    async def _to_dead_letters(
        self, record: ConsumerRecord[bytes, bytes], reason: str, error_type: str, attempts: int
    ) -> None:
        letter = DeadLetter.wrap(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=f"notifier route {self.route}: {reason}",
            error_type=error_type,
            failed_at=self._clock.now(),
            attempts=attempts,
        )
        await self._dead_letter(letter.key or "", encode(letter))
        self._outcomes.labels(self.route, "dead_lettered").inc()
        log.error(
            "notifier route %s: %s[%d]@%d dead-lettered: %s",
            self.route,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
