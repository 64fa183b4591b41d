"""Errors the gateway itself answers, in OpenIM's envelope shape.

Every such error is JSON ``{"errCode": int, "errMsg": str, "errDlt": str}``
with a meaningful HTTP status, so clients parse one format. Gateway codes are
five digits whose first three are the HTTP status (``40400`` is a 404), which
keeps them clear of OpenIM's own codes (below 2000, 10001-10014, 80000, 9000x).
The table in ``docs/errors.md`` lists them; they are stable.

* GatewayError - an error answered to the client; knows its status, code and message,
  and logs itself with the detail the client is not shown.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

BAD_REQUEST = 40000
INVALID_JSON = 40001
INVALID_FIELD = 40002
INVALID_PUBLIC_KEY = 40010
LOW_ORDER_PUBLIC_KEY = 40011
UNKNOWN_PLATFORM = 40012
UNAUTHENTICATED = 40100
INVALID_CREDENTIALS = 40101
FORBIDDEN = 40300
BANNED = 40301
SESSION_OF_ANOTHER_USER = 40302
FIELD_NAMES_ANOTHER_USER = 40303
NOT_A_PARTY = 40304
VALUE_NOT_ALLOWED = 40305
NOT_FOUND = 40400
GIF_SEARCH_OFF = 40401
METHOD_NOT_ALLOWED = 40500
GONE = 41000
PAYLOAD_TOO_LARGE = 41300
RATE_LIMITED = 42900
HEADERS_TOO_LARGE = 43100
INTERNAL = 50000
BAD_UPSTREAM = 50200
BAD_GIF_PROVIDER = 50201
UNAVAILABLE = 50300
IDENTITY_VERIFIER_UNAVAILABLE = 50301
UPSTREAM_TIMEOUT = 50400
GIF_PROVIDER_TIMEOUT = 50401


class GatewayError(Exception):
    """An error answered to the client as the envelope.

    ``message`` is what the client reads; ``detail`` is for the log only.
    ``status`` and ``code`` are set per class, or per instance where they
    follow an answer from OpenIM.
    """

    status: int = 500
    code: int = INTERNAL
    level: ClassVar[int] = logging.WARNING

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def response(self) -> web.Response:
        return envelope_response(self.status, self.code, self.message)

    def log(self, request: web.Request) -> None:
        log.log(
            self.level,
            "%s answered %d: %s",
            type(self).__name__,
            self.status,
            self.detail or self.message,
            extra={"errCode": self.code, "method": request.method},
        )


class BadRequest(GatewayError):
    status = 400
    code = BAD_REQUEST


class InvalidJSON(BadRequest):
    code = INVALID_JSON


class InvalidField(BadRequest):
    code = INVALID_FIELD


class NotFound(GatewayError):
    status = 404
    code = NOT_FOUND


class Forbidden(GatewayError):
    status = 403
    code = FORBIDDEN


class Unavailable(GatewayError):
    """A dependency (the store, OpenIM) cannot serve the request now."""

    status = 503
    code = UNAVAILABLE
    level = logging.ERROR


class BadUpstream(GatewayError):
    status = 502
    code = BAD_UPSTREAM
    level = logging.ERROR


class UpstreamTimeout(GatewayError):
    status = 504
    code = UPSTREAM_TIMEOUT
    level = logging.ERROR


def envelope_response(status: int, code: int, message: str, detail: str = "") -> web.Response:
    body = orjson.dumps({"errCode": code, "errMsg": message, "errDlt": detail})
    return web.Response(status=status, body=body, content_type="application/json")
