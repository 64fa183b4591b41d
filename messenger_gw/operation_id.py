"""The operationID that ties one request together across the gateway, its logs and OpenIM.

A client-supplied ``X-Request-ID`` (or ``operationID``) is kept when it is a
sane token; otherwise one is minted. It is echoed back as ``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from .logs import OPERATION_ID_VAR

OPERATION_ID: web.RequestKey[str] = web.RequestKey("operation_id", str)

RESPONSE_HEADER = "X-Request-ID"
_REQUEST_HEADERS = ("X-Request-ID", "operationID")
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


# A random per-process prefix and a counter: unique across processes and restarts,
# and no system call per request.
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_operation_id() -> str:
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def accept_operation_id(candidate: str | None) -> str:
    """``candidate`` if it is a bounded token of safe characters, else a fresh ID."""
    if candidate is not None and _SANE.fullmatch(candidate):
        return candidate
    return new_operation_id()


@web.middleware
async def operation_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    candidate = next((v for h in _REQUEST_HEADERS if (v := request.headers.get(h)) is not None), None)
    operation_id = accept_operation_id(candidate)
    request[OPERATION_ID] = operation_id
    token = OPERATION_ID_VAR.set(operation_id)
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers[RESPONSE_HEADER] = operation_id
            raise
        response.headers[RESPONSE_HEADER] = operation_id
        return response
    finally:
        OPERATION_ID_VAR.reset(token)
