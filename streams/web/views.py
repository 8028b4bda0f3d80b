"""The endpoints of docs/http-api.md as Faust web views, and their routes.

Every view answers JSON (``/metrics``: the Prometheus text format). Errors are
``{"error": <sentence>, "field": <field or null>}`` (phaseflow.streams.web.responses). What the
views share, the gate of mutating calls included, is :class:`~phaseflow.streams.web.api.HttpApi`;
they read the worker's state through its typed facade (``api.state``), never a Faust table.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final

from aiohttp import web
from faust.web import View
from pydantic import JsonValue, ValidationError

from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseCompletion, RerunRequest
from phaseflow.streams.core.metrics import CONTENT_TYPE_LATEST
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.web import burrow
from phaseflow.streams.web.api import GAME_DATE, HttpApi
from phaseflow.streams.web.bodies import CoordinatorBody, RerunBody
from phaseflow.streams.web.dependency_errors import dependency_failure
from phaseflow.streams.web.openapi import openapi_document
from phaseflow.streams.web.phase_status import date_latency, phase_status
from phaseflow.streams.web.responses import HttpError, bad_body, error_response, json_response
from phaseflow.streams.web.status_page import render_status_page
from phaseflow.streams.web.status_summary import StatusSummary

log = logging.getLogger(__name__)

#: How often the status page (``GET /``) refreshes itself.
STATUS_PAGE_REFRESH_SECONDS: Final = 5


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
        # phaseflow_worker_ready says what /ready would answer now, not at its last call.
        await self.api.readiness.report()
        return web.Response(
            body=self.api.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class OpenApiView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        return json_response(openapi_document())


class LagView(ApiView):
    async def get(self, _request: web.Request) -> web.Response:
        snapshot = self.api.state.lag()
        if snapshot is None:
            return error_response(503, "no lag monitor is installed in this worker")
        partitions = [
            {"topic": topic, "partition": partition, "lag": lag}
            for (topic, partition), lag in sorted(snapshot.items())
        ]
        # "total"/"partitions": the own group on this worker (as before); "groups": every
        # watched group, the same on every worker (docs/lag-monitor.md).
        body: dict[str, Any] = {"total": sum(snapshot.values()), "partitions": partitions}
        body["groups"] = self.api.state.lag_groups() or []
        return json_response(body)


# --- Burrow-compatible reads (phaseflow.streams.web.burrow) ------------------------------------


class _BurrowView(ApiView):
    """Burrow's v3 answers; 503 (phaseflow's error shape) without a lag monitor."""

    def rows(self) -> list[LagRow]:
        rows = self.api.state.lag_rows()
        if rows is None:
            raise HttpError(error_response(503, "no lag monitor is installed in this worker"))
        return rows


class BurrowClustersView(_BurrowView):
    async def get(self, request: web.Request) -> web.Response:
        self.rows()
        cluster = self.api.state.burrow_cluster()
        return json_response(burrow.cluster_list(cluster, request.path, socket.gethostname()))


class BurrowConsumersView(_BurrowView):
    async def get(self, request: web.Request, cluster: str) -> web.Response:
        rows, host = self.rows(), socket.gethostname()
        if cluster != self.api.state.burrow_cluster():
            return json_response(burrow.error_body("cluster not found", request.path, host), 404)
        groups = (row.group for row in rows)
        return json_response(burrow.consumer_list(groups, request.path, host))


class _BurrowGroupView(_BurrowView):
    #: Burrow's ``/lag`` shows every partition, its ``/status`` only those not OK.
    show_all: ClassVar[bool]

    async def get(self, request: web.Request, cluster: str, group: str) -> web.Response:
        rows = self.rows()
        if cluster == self.api.state.burrow_cluster():
            status = burrow.consumer_status(cluster, group, rows, show_all=self.show_all)
        else:
            status = burrow.not_found(cluster, group)
        code, body = burrow.status_response(status, request.path, socket.gethostname())
        return json_response(body, code)


class BurrowGroupLagView(_BurrowGroupView):
    show_all = True


class BurrowGroupStatusView(_BurrowGroupView):
    show_all = False


class StatusView(ApiView):
    async def get(self, _request: web.Request, game_date: str) -> web.Response:
        try:
            parsed = GAME_DATE.validate_python(game_date)
        except ValidationError as error:
            return error_response(400, error.errors()[0]["msg"], "game_date")
        states = self.api.state.readiness
        if states is None:
            return error_response(503, "readiness is not installed in this worker")
        registry, today = self.api.ctx.registry, self.api.today()
        phases = phase_status(
            registry, states, parsed, today, zone=self.api.zone, now=self.api.ctx.clock.now()
        )
        latency = date_latency(registry, states, parsed, today)
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
            raise bad_body(error) from None
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
            raise bad_body(error) from None
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
            raise bad_body(error) from None
        handler = self.api.state.coordinator
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
    ("/v3/kafka", BurrowClustersView),
    ("/v3/kafka/{cluster}/consumer", BurrowConsumersView),
    ("/v3/kafka/{cluster}/consumer/{group}/lag", BurrowGroupLagView),
    ("/v3/kafka/{cluster}/consumer/{group}/status", BurrowGroupStatusView),
)
