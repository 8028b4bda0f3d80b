"""What every view shares (:class:`HttpApi`): the gate a mutating call passes (key, rate limit,
body, audit record), publishing with an acknowledgement, and the reads behind ``GET /status``.

Mutating calls go through :meth:`HttpApi.accept`: key (401), rate limit (429), body (413/400),
audit record (503 if it cannot be written), and only then act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from phaseflow.models.audit import audit_record
from phaseflow.models.codec import encode
from phaseflow.models.fields import GameDate
from phaseflow.streams.core.features import FeatureContext
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.web.auth import ApiKeys, presented_key
from phaseflow.streams.web.health import ReadinessCheck
from phaseflow.streams.web.phase_status import NO_STATES, phase_status
from phaseflow.streams.web.ratelimit import RateLimiter
from phaseflow.streams.web.responses import HttpError, error_response
from phaseflow.streams.web.status_summary import build_summary, recent_game_dates
from phaseflow.streams.web.worker_state import WorkerState

log = logging.getLogger(__name__)

#: A publish (audit record or the call's own message) not acknowledged by then answers 503.
SEND_TIMEOUT_SECONDS: Final = 10.0
GAME_DATE: Final = TypeAdapter(GameDate)
_UNAUTHORIZED: Final = "a valid API key is required (Authorization: Bearer <key> or X-API-Key)"


@dataclass(frozen=True)
class Accepted:
    key_id: str
    body: bytes


class HttpApi:
    """Everything the views share: keys, limits, audit, metrics, readiness, the worker's state.

    ``ctx`` is read at each call (tests swap its ``side_publisher``); ``state`` is the typed
    facade over the installed features.
    """

    def __init__(
        self,
        ctx: FeatureContext,
        state: WorkerState,
        *,
        keys: ApiKeys,
        limiter: RateLimiter,
        metrics: Metrics,
        readiness: ReadinessCheck,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.state = state
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics
        self.readiness = readiness
        self.send_timeout = send_timeout
        self.zone = ZoneInfo(ctx.settings.pipeline_timezone)

    # --- mutating calls -------------------------------------------------------------------

    async def accept(self, request: web.Request) -> Accepted:
        """Authenticate, rate-limit and read the body of a mutating call."""
        key_id = self.keys.identify(presented_key(request.headers))
        if key_id is None:
            # One response for a missing and a wrong key; the comparison above did the same
            # work for both.
            raise HttpError(
                error_response(401, _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
            )
        wait = self.limiter.acquire(key_id)
        if wait:
            log.warning("rate limit exceeded by %s on %s", key_id, request.path)
            raise HttpError(
                error_response(
                    429,
                    f"rate limit of {self.ctx.settings.web_rate_limit_per_minute} calls per minute "
                    f"exceeded; retry after {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            )
        limit = self.ctx.settings.max_message_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HttpError(error_response(413, f"body is larger than {limit} bytes"))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise HttpError(error_response(413, f"body is larger than {limit} bytes")) from None
        if len(body) > limit:
            raise HttpError(error_response(413, f"body is larger than {limit} bytes"))
        return Accepted(key_id=key_id, body=body)

    async def audit(
        self, request: web.Request, accepted: Accepted, summary: Mapping[str, str]
    ) -> None:
        """Write the audit record; if it cannot be written the call must not act (503)."""
        record = audit_record(
            key_id=accepted.key_id,
            action=f"{request.method} {request.path}",
            body=accepted.body,
            client=request.remote,
            at=self.ctx.clock.now(),
            summary=dict(summary),
        )
        await self.send(TopicName.AUDIT, record.key, encode(record))
        log.info("%s by %s from %s", record.action, record.key_id, record.client)

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        """Publish and wait for the broker's acknowledgement (503 on timeout).

        An HTTP caller must learn whether the record is durable. The side producer is used, not
        the app's: under exactly_once the app's producer would hold the record in a partition's
        transaction until that partition next commits (see phaseflow.streams.core.side_producer).
        """
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.ctx.side_publisher.send(topic, key, value)
        except TimeoutError:
            log.warning("publish to %s not acknowledged within %.0f s", topic, self.send_timeout)
            raise HttpError(
                error_response(503, f"the broker did not acknowledge the {topic} record in time")
            ) from None

    # --- reads -----------------------------------------------------------------------------

    def today(self) -> date:
        return self.ctx.clock.now().astimezone(self.zone).date()

    def status_summary(self, requested: str | None) -> dict[str, Any]:
        """The ``GET /status`` body: ``requested`` (a date, 400 if malformed) or the latest
        dates of this worker's readiness state, with lag, dead letters and recent alerts."""
        state = self.state
        if requested is not None:
            try:
                dates = [GAME_DATE.validate_python(requested)]
            except ValidationError as error:
                raise HttpError(error_response(400, error.errors()[0]["msg"], "date")) from None
        else:
            dates = recent_game_dates(state.game_dates())
        now = self.ctx.clock.now()
        today = self.today()
        # No readiness in this worker: every phase shows as not started.
        readiness = state.readiness or NO_STATES
        summary = build_summary(
            now=now,
            today=today,
            dates=dates,
            phases_of=lambda day: phase_status(
                self.ctx.registry, readiness, day, today, zone=self.zone, now=now
            ),
            lag=state.lag_history,
            letters=state.dead_letters,
            alerts=state.recent_alerts,
        )
        summary["deployment"] = state.deployment()
        summary["sinks"] = state.sinks()
        return summary
