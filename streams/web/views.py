"""The endpoints of docs/http-api.md as Faust web views.

Every view answers JSON (``/metrics``: the Prometheus text format). Errors are
``{"error": <sentence>, "field": <field or null>}``. Mutating calls go through
:meth:`HttpApi.accept`: key (401), rate limit (429), body (413/400), audit record (503 if it
cannot be written), and only then act.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web
from faust.web import View
from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter, ValidationError

from phaseflow.agents.phase_order import blocking_phase
from phaseflow.agents.phase_timing import date_timing, sla_breached
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseCompletion, RerunRequest
from phaseflow.models.fields import GameDate, Identifier, Phase, Text
from phaseflow.streams.deployment import identity_summary
from phaseflow.streams.registry import Registry
from phaseflow.streams.topics import TopicName
from phaseflow.streams.web.audit import audit_record
from phaseflow.streams.web.auth import ApiKeys, presented_key
from phaseflow.streams.web.dependency_errors import dependency_failure
from phaseflow.streams.web.gate_status import gate_rejection
from phaseflow.streams.web.health import ReadinessCheck
from phaseflow.streams.web.metrics import CONTENT_TYPE_LATEST, LagSnapshot, Metrics
from phaseflow.streams.web.openapi import openapi_document
from phaseflow.streams.web.ratelimit import RateLimiter
from phaseflow.streams.web.status_page import render_status_page
from phaseflow.streams.web.status_summary import StatusSummary, build_summary, recent_game_dates

if TYPE_CHECKING:
    from phaseflow.streams.app import AppContext

log = logging.getLogger(__name__)

#: A publish (audit record or the call's own message) not acknowledged by then answers 503.
SEND_TIMEOUT_SECONDS: Final = 10.0
#: How often the status page (``GET /``) refreshes itself.
STATUS_PAGE_REFRESH_SECONDS: Final = 5
_FIELD_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_.\[\]]*): ")
_GAME_DATE: Final = TypeAdapter(GameDate)
_UNAUTHORIZED: Final = "a valid API key is required (Authorization: Bearer <key> or X-API-Key)"


class CoordinatorHandler(Protocol):
    """What ``ctx.components["coordinator"]`` must offer for ``POST /coordinator/*``.

    Both return a JSON-able summary for the response; a ``ValueError`` means the request
    cannot be served as asked (answered 409 with its message).
    """

    async def start(
        self, game_date: date, batch_id: str | None, requested_by: str
    ) -> Mapping[str, JsonValue]: ...

    async def complete(
        self, game_date: date, batch_id: str | None, requested_by: str
    ) -> Mapping[str, JsonValue]: ...


class RerunBody(BaseModel):
    """``POST /reruns``: one processor, or every expected processor of the phase."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    game_date: GameDate
    phase: Phase
    processor_name: Identifier | None = None


class CoordinatorBody(BaseModel):
    """``POST /coordinator/start`` and ``/complete``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    game_date: GameDate
    batch_id: Text | None = None


class HttpError(Exception):
    """Ends a request with ``response`` (raised anywhere below a view)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": message, "field": field}, status, headers)


def field_of(reason: str) -> str | None:
    """The field a codec reason names first (``"phase: ..."`` -> ``"phase"``), if any."""
    match = _FIELD_RE.match(reason)
    return match.group(1) if match else None


def _bad_body(error: EventDecodeError) -> HttpError:
    return HttpError(error_response(400, error.reason, field_of(error.reason)))


@dataclass(frozen=True)
class Accepted:
    key_id: str
    body: bytes


class HttpApi:
    """Everything the views share: keys, limits, audit, metrics, readiness, the app context."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        keys: ApiKeys,
        limiter: RateLimiter,
        metrics: Metrics,
        readiness: ReadinessCheck,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        self.ctx = ctx
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
                    f"rate limit of {self.ctx.settings.rate_limit_per_minute} calls per minute "
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
        transaction until that partition next commits (see phaseflow.streams.side_producer).
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

    def lag(self) -> LagSnapshot | None:
        return lag_snapshot(self.ctx)

    def readiness_table(self) -> Mapping[str, Any] | None:
        """The readiness table, when the readiness feature is installed in this worker."""
        if "readiness" not in self.ctx.components:
            return None
        table: Mapping[str, Any] = self.ctx.app.tables["readiness"]
        return table

    def status_summary(self, requested: str | None) -> dict[str, Any]:
        """The ``GET /status`` body: ``requested`` (a date, 400 if malformed) or the latest
        dates of this worker's readiness table, with lag, dead letters and recent alerts."""
        table = self.readiness_table() or {}
        if requested is not None:
            try:
                dates = [_GAME_DATE.validate_python(requested)]
            except ValidationError as error:
                raise HttpError(error_response(400, error.errors()[0]["msg"], "date")) from None
        else:
            dates = recent_game_dates(list(table.keys()))
        now = self.ctx.clock.now()
        today = self.today()
        components = self.ctx.components
        summary = build_summary(
            now=now,
            today=today,
            dates=dates,
            phases_of=lambda day: phase_status(
                self.ctx.registry, table, day, today, zone=self.zone, now=now
            ),
            lag=components.get("lag_monitor"),
            letters=components.get("dead_letters"),
            alerts=components.get("recent_alerts"),
        )
        summary["deployment"] = deployment_summary(self.ctx)
        summary["sinks"] = sink_summary(components)
        return summary


#: The components whose ``health()`` ``GET /status`` lists under "sinks" (sinks/install.py).
_SINK_COMPONENTS: Final = ("prediction_sink", "audit_sink")


def sink_summary(components: Mapping[str, Any]) -> dict[str, Any]:
    """Each installed BigQuery sink: running, rows buffered, and why it cannot start or write."""
    return {name: components[name].health() for name in _SINK_COMPONENTS if name in components}


def deployment_summary(ctx: AppContext) -> dict[str, object]:
    """Who this worker is on the cluster and which guarantee it runs (docs/deployment.md)."""
    delivery = ctx.delivery
    settings = delivery.settings if delivery is not None else ctx.settings
    return {
        **identity_summary(settings),
        "processing_guarantee": settings.faust_processing_guarantee,
        "idempotent_producer": settings.idempotent_producer,
        "guarantee_reason": delivery.reason
        if delivery is not None
        else "not probed: the app was built without asking the broker",
    }


def lag_snapshot(ctx: AppContext) -> LagSnapshot | None:
    """Lag from ``ctx.components["lag"]``: a callable returning {(topic, partition): messages}."""
    provider = ctx.components.get("lag")
    if provider is None:
        return None
    snapshot: LagSnapshot = provider()
    return snapshot


class ApiView(View):
    """A view bound to an :class:`HttpApi`; errors become JSON, every response is counted."""

    api: ClassVar[HttpApi]

    async def dispatch(self, request: Any) -> Any:
        try:
            response = await super().dispatch(request)
        except HttpError as error:
            response = error.response
        except Exception as error:
            reason = dependency_failure(error)
            if reason is None:
                log.exception("%s %s failed", request.method, self.view_path)
                response = error_response(500, "internal error (logged on the worker)")
            else:
                log.warning("%s %s: %s", request.method, self.view_path, reason)
                response = error_response(503, reason)
        self.api.metrics.http_requests.labels(
            route=self.view_path, status=str(response.status)
        ).inc()
        return response


# --- open endpoints ---------------------------------------------------------------------------


class HealthView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        return json_response({"status": "alive"})


class ReadyView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        report = await self.api.readiness.report()
        body = {"ready": report.ready, "reasons": list(report.reasons), "lag": report.total_lag}
        return json_response(body, 200 if report.ready else 503)


class MetricsView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.api.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class OpenApiView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        return json_response(openapi_document())


class LagView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        snapshot = self.api.lag()
        if snapshot is None:
            return error_response(503, "no lag monitor is installed in this worker")
        partitions = [
            {"topic": topic, "partition": partition, "lag": lag}
            for (topic, partition), lag in sorted(snapshot.items())
        ]
        return json_response({"total": sum(snapshot.values()), "partitions": partitions})


def _date_states(
    registry: Registry, table: Mapping[str, Any], game_date: date
) -> dict[int, PhaseState]:
    """Every registry phase's state for ``game_date`` (an empty one where none is stored)."""
    states = {}
    for spec in registry.phases:
        stored = table.get(PhaseState.table_key(game_date, spec.phase))
        states[spec.phase] = (
            PhaseState.from_table(stored)
            if stored is not None
            else PhaseState(game_date=game_date, phase=spec.phase)
        )
    return states


def phase_status(
    registry: Registry,
    table: Mapping[str, Any],
    game_date: date,
    today: date,
    *,
    zone: ZoneInfo | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per phase of ``game_date``: expected, done and missing processors, trigger, deadline,
    latency and SLA (``zone``, the pipeline time zone, places the SLA; without it the SLA
    fields stay empty; ``now`` lets ``sla_breached`` say so before the alert is raised)."""
    states = _date_states(registry, table, game_date)
    timing = date_timing(registry, states, game_date, today=today, zone=zone or ZoneInfo("UTC"))
    timings = {entry.phase: entry for entry in timing.phases}
    phases: list[dict[str, Any]] = []
    for spec in registry.phases:
        state = states[spec.phase]
        entry = timings[spec.phase]
        missed = zone is not None and now is not None and sla_breached(timing, entry, now)
        expected = spec.expected_processors(game_date, today)
        done = state.done()
        deadline = (
            (state.received_since + spec.max_wait).isoformat()
            if state.received_since is not None and spec.max_wait is not None
            else None
        )
        phases.append(
            {
                "phase": spec.phase,
                "name": spec.name,
                "expected": sorted(expected),
                "done": sorted(done),
                "missing": sorted(expected - done),
                "processors": {name: rec.status for name, rec in sorted(state.processors.items())},
                "first_completion_at": _iso(state.first_completion_at),
                "deadline": deadline,
                "trigger": state.trigger.model_dump(mode="json") if state.trigger else None,
                "rejected": gate_rejection(spec, state),
                "completed_at": _iso(entry.completed_at),
                "duration_seconds": entry.duration_seconds,
                "sla_due_at": _iso(entry.sla_due_at) if zone is not None else None,
                "sla_breached": missed or state.sla_breached_at is not None,
                "sla_breached_at": _iso(state.sla_breached_at),
                "held_by_phase": _held_by(registry, state, states),
                "stalled_at": _iso(state.stall_alerted_at),
                # Automatic reruns per processor: attempts made, the next one scheduled, circuit.
                "reruns": {
                    name: {
                        "requested": rerun.requested,
                        "next_due_at": _iso(rerun.next_due_at),
                        "next_reason": rerun.next_reason,
                        "circuit_open": rerun.circuit_open,
                    }
                    for name, rerun in sorted(state.reruns.items())
                },
            }
        )
    return phases


def _held_by(registry: Registry, state: PhaseState, states: Mapping[int, PhaseState]) -> int | None:
    """The earlier phase that must fire before this one may (phaseflow.agents.phase_order); shown
    for a phase that has completions and has not fired."""
    if state.trigger is not None or not state.processors or not registry.phase(state.phase).gated:
        return None
    return blocking_phase(registry, state, states.get(state.phase - 1))


def date_latency(
    registry: Registry, table: Mapping[str, Any], game_date: date, today: date
) -> dict[str, Any]:
    """End to end for ``game_date``: its first completion (phase 1's) to the last phase's
    completion (see :mod:`phaseflow.agents.phase_timing`)."""
    states = _date_states(registry, table, game_date)
    # The SLA is not part of this summary, so any zone will do.
    timing = date_timing(registry, states, game_date, today=today, zone=ZoneInfo("UTC"))
    return {
        "started_at": _iso(timing.started_at),
        "completed_at": _iso(timing.completed_at),
        "end_to_end_seconds": timing.end_to_end_seconds,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class StatusView(ApiView):
    async def get(self, _request: web.Request, game_date: str) -> web.Response:
        try:
            parsed = _GAME_DATE.validate_python(game_date)
        except ValidationError as error:
            return error_response(400, error.errors()[0]["msg"], "game_date")
        table = self.api.readiness_table()
        if table is None:
            return error_response(503, "readiness is not installed in this worker")
        registry, today = self.api.ctx.registry, self.api.today()
        phases = phase_status(
            registry, table, parsed, today, zone=self.api.zone, now=self.api.ctx.clock.now()
        )
        latency = date_latency(registry, table, parsed, today)
        return json_response(
            {"game_date": parsed.isoformat(), "phases": phases, "latency": latency}
        )


class StatusSummaryView(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        return json_response(self.api.status_summary(request.query.get("date")))


class StatusPageView(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        summary = StatusSummary.model_validate(self.api.status_summary(request.query.get("date")))
        page = render_status_page(summary, refresh_seconds=STATUS_PAGE_REFRESH_SECONDS)
        return web.Response(
            text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )


# --- mutating endpoints -------------------------------------------------------------------------


class CompletionsView(ApiView):
    async def post(self, request: web.Request) -> web.Response:
        accepted = await self.api.accept(request)
        try:
            completion = decode(PhaseCompletion, accepted.body)
        except EventDecodeError as error:
            raise _bad_body(error) from None
        registry = self.api.ctx.registry
        known = registry.phase_for_processor(completion.processor_name)
        if known is None:
            return error_response(
                400,
                f"unknown processor {completion.processor_name!r} (not in the registry)",
                "processor_name",
            )
        if known != completion.phase:
            return error_response(
                400,
                f"processor {completion.processor_name!r} belongs to phase {known}, "
                f"not {completion.phase}",
                "phase",
            )
        summary = {
            "game_date": completion.key,
            "phase": str(completion.phase),
            "processor_name": completion.processor_name,
        }
        await self.api.audit(request, accepted, summary)
        await self.api.send(TopicName.PHASE_COMPLETIONS, completion.key, encode(completion))
        return json_response(
            {"accepted": True, "key": completion.key, "dedup_id": completion.dedup_id}, 202
        )


class RerunsView(ApiView):
    async def post(self, request: web.Request) -> web.Response:
        accepted = await self.api.accept(request)
        try:
            body = decode(RerunBody, accepted.body)
        except EventDecodeError as error:
            raise _bad_body(error) from None
        registry = self.api.ctx.registry
        try:
            spec = registry.phase(body.phase)
        except KeyError:
            return error_response(400, f"phase {body.phase} is not in the registry", "phase")
        if body.processor_name is None:
            processors = sorted(spec.expected_processors(body.game_date, self.api.today()))
        elif body.processor_name in spec.processors:
            processors = [body.processor_name]
        else:
            return error_response(
                400,
                f"processor {body.processor_name!r} is not in phase {body.phase}",
                "processor_name",
            )
        summary = {"game_date": body.game_date.isoformat(), "phase": str(body.phase)}
        if body.processor_name is not None:
            summary["processor_name"] = body.processor_name
        await self.api.audit(request, accepted, summary)
        now = self.api.ctx.clock.now()
        ids: list[JsonValue] = []
        for name in processors:
            rerun = RerunRequest(
                game_date=body.game_date,
                phase=body.phase,
                processor_name=name,
                reason="manual",
                # A manual request is a new decision each time: unique id, not a retry's.
                request_id=str(uuid.uuid4()),
                requested_by=accepted.key_id,
                requested_at=now,
            )
            await self.api.send(TopicName.RERUN_REQUESTS, rerun.key, encode(rerun))
            ids.append(rerun.request_id)
        return json_response({"accepted": True, "requests": ids}, 202)


class _CoordinatorView(ApiView):
    action: ClassVar[str]

    async def post(self, request: web.Request) -> web.Response:
        accepted = await self.api.accept(request)
        try:
            body = decode(CoordinatorBody, accepted.body)
        except EventDecodeError as error:
            raise _bad_body(error) from None
        handler = self.api.ctx.components.get("coordinator")
        if handler is None:
            return error_response(503, "the prediction coordinator is not installed in this worker")
        summary = {"game_date": body.game_date.isoformat(), "batch_id": body.batch_id or ""}
        await self.api.audit(request, accepted, summary)
        call: Callable[..., Awaitable[Mapping[str, JsonValue]]] = getattr(handler, self.action)
        try:
            result = await call(body.game_date, body.batch_id, accepted.key_id)
        except ValueError as error:
            return error_response(409, str(error))
        return json_response({"accepted": True, "result": dict(result)}, 202)


class CoordinatorStartView(_CoordinatorView):
    action = "start"


class CoordinatorCompleteView(_CoordinatorView):
    action = "complete"


#: Path -> view, in the order of docs/http-api.md.
ROUTES: Final[tuple[tuple[str, type[ApiView]], ...]] = (
    ("/coordinator/start", CoordinatorStartView),
    ("/coordinator/complete", CoordinatorCompleteView),
    ("/completions", CompletionsView),
    ("/reruns", RerunsView),
    ("/health", HealthView),
    ("/ready", ReadyView),
    ("/metrics", MetricsView),
    ("/status/{game_date}", StatusView),
    ("/status", StatusSummaryView),
    ("/", StatusPageView),
    ("/lag", LagView),
    ("/openapi.json", OpenApiView),
)
