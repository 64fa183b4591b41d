"""The envelope for any exception: the gateway's own errors, the store's and OpenIM's failures, aiohttp's
HTTP errors.

The mapping lives at the edge, not in ``errors``, so that the error tree depends on nothing and every room may
raise from it.

The envelope's status is meaningful, except for a client of the OpenIM SDK: the SDK reports a non-200
answer by its status text alone and drops its errCode (``openim-sdk-protocol.md`` section 3.1), so a request
marked with :func:`answer_as_openim` (by authentication, once it sees an imToken) gets every error as OpenIM
answers its own, HTTP 200 with the envelope. Here, and nowhere else, is that decided.
"""

from __future__ import annotations

import logging

from aiohttp import web

from messenger_gw.errors import (
    BAD_REQUEST,
    BAD_UPSTREAM,
    FORBIDDEN,
    HEADERS_TOO_LARGE,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UPSTREAM_TIMEOUT,
    BadUpstream,
    GatewayError,
    Unavailable,
    UpstreamTimeout,
    envelope_response,
)
from messenger_gw.openim import OpenIMError, OpenIMTimeout, OpenIMUnavailable
from messenger_gw.store import StoreError

log = logging.getLogger(__name__)

OPENIM_STYLE: web.RequestKey[bool] = web.RequestKey("openim_style", bool)

_CODE_FOR_STATUS = {
    400: BAD_REQUEST,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: PAYLOAD_TOO_LARGE,
    429: RATE_LIMITED,
    431: HEADERS_TOO_LARGE,
    502: BAD_UPSTREAM,
    503: UNAVAILABLE,
    504: UPSTREAM_TIMEOUT,
}


def from_openim(exc: OpenIMError) -> GatewayError:
    """The gateway's answer when a call to OpenIM fails where the client cannot act on it."""
    if isinstance(exc, OpenIMTimeout):
        return UpstreamTimeout("OpenIM did not answer in time", detail=str(exc))
    if isinstance(exc, OpenIMUnavailable):
        return BadUpstream("OpenIM is unreachable", detail=str(exc))
    return BadUpstream("OpenIM failed", detail=str(exc))


def from_store(exc: StoreError) -> GatewayError:
    return Unavailable("The gateway's store is unavailable", detail=str(exc))


def answer_as_openim(request: web.Request) -> None:
    """The request is from a client of the OpenIM SDK: its errors are answered with HTTP 200, as OpenIM's are."""
    request[OPENIM_STYLE] = True


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The envelope answering ``exc``, logged; an ``HTTPException`` below 400 (a redirect) is raised again."""
    response = _envelope_for(request, exc)
    if request.get(OPENIM_STYLE, False):
        response.set_status(200)  # the errCode, errMsg and headers (Retry-After, Allow) stay
    return response


def _envelope_for(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, GatewayError):
        error = exc
    elif isinstance(exc, StoreError):
        error = from_store(exc)
    elif isinstance(exc, OpenIMError):
        error = from_openim(exc)
    elif isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _CODE_FOR_STATUS.get(exc.status, INTERNAL if exc.status >= 500 else BAD_REQUEST)
        response = envelope_response(exc.status, code, exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    else:
        # The stack trace goes to the log; the client gets the envelope only.
        log.error("unhandled error", exc_info=exc)
        return envelope_response(500, INTERNAL, "Internal Server Error")
    error.log(request)
    return error.response()
