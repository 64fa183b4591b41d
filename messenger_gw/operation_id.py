"""The operationID that ties one request together across the gateway, its logs and OpenIM.

A client-supplied ``X-Request-ID`` (or ``operationID``) is kept when it is a
sane token; otherwise one is minted. The edge (``edge/middleware.py``) echoes it back as
``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import os
import re

from aiohttp import web

OPERATION_ID: web.RequestKey[str] = web.RequestKey("operation_id", str)

RESPONSE_HEADER = "X-Request-ID"
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


def operation_id_of(request: web.Request) -> str:
    """The request's own ``X-Request-ID`` (or ``operationID``) when sane, else a fresh one."""
    headers = request.headers
    return accept_operation_id(headers.get("X-Request-ID") or headers.get("operationID"))
