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
from collections.abc import Awaitable, Callable
from typing import ClassVar

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

BAD_REQUEST = 40000
UNAUTHENTICATED = 40100
FORBIDDEN = 40300
NOT_FOUND = 40400
METHOD_NOT_ALLOWED = 40500
PAYLOAD_TOO_LARGE = 41300
RATE_LIMITED = 42900
INTERNAL = 50000
BAD_UPSTREAM = 50200
UNAVAILABLE = 50300
UPSTREAM_TIMEOUT = 50400

_CODE_FOR_STATUS = {
    400: BAD_REQUEST,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: PAYLOAD_TOO_LARGE,
    429: RATE_LIMITED,
    502: BAD_UPSTREAM,
    503: UNAVAILABLE,
    504: UPSTREAM_TIMEOUT,
}


class GatewayError(Exception):
    """An error answered to the client as the envelope.

    ``message`` is what the client reads; ``detail`` is for the log only.
    """

    status: ClassVar[int] = 500
    code: ClassVar[int] = INTERNAL
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


def envelope_response(status: int, code: int, message: str, detail: str = "") -> web.Response:
    body = orjson.dumps({"errCode": code, "errMsg": message, "errDlt": detail})
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        exc.log(request)
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_FOR_STATUS.get(exc.status, INTERNAL if exc.status >= 500 else BAD_REQUEST)
        response = envelope_response(exc.status, code, exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        # The stack trace goes to the log; the client gets the envelope only.
        log.exception("unhandled error")
        return envelope_response(500, INTERNAL, "Internal Server Error")
