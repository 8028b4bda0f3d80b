"""How every endpoint answers: JSON bodies, ``{"error", "field"}`` errors, and the exception
that ends a request with a response from anywhere below a view."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import orjson
from aiohttp import web

from phaseflow.models.codec import EventDecodeError

_FIELD_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_.\[\]]*): ")


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


def bad_body(error: EventDecodeError) -> HttpError:
    """A 400 naming the field the body got wrong."""
    return HttpError(error_response(400, error.reason, field_of(error.reason)))
