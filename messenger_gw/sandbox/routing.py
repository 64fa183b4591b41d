"""The sandbox's route table: OpenIM path -> handler.

A handler gets the sandbox, the caller (None on the two token-free routes)
and the decoded body, and returns the envelope's ``data`` (None for an empty
reply) or raises :class:`CodeError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .envelope import CodeError
from .state import Caller, Sandbox

# The body is a Body, or a RawBody for the routes registered with raw=True.
Handler = Callable[[Sandbox, Caller | None, Any], Any]

ROUTES: dict[str, Handler] = {}
# Routes whose handler reads the raw body (the /jssdk routes take protobuf): it gets a RawBody.
RAW_BODY_ROUTES: set[str] = set()

# Paths (prefixes, as in internal/api/router.go) that need no token header.
TOKEN_FREE_PREFIXES = ("/auth/get_admin_token", "/auth/parse_token")


@dataclasses.dataclass(frozen=True)
class RawBody:
    content_type: str
    data: bytes


def route(path: str, *, raw: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if path in ROUTES:
            raise ValueError(f"route {path} registered twice")
        ROUTES[path] = handler
        if raw:
            RAW_BODY_ROUTES.add(path)
        return handler

    return register


def caller_of(caller: Caller | None) -> Caller:
    if caller is None:  # a token-free route's handler asked for a caller
        raise CodeError.local(1001)
    return caller


def require_admin(caller: Caller | None, detail: str = "only app manager can do this") -> Caller:
    who = caller_of(caller)
    if not who.is_admin:
        raise CodeError(1002, detail)
    return who


def require_self_or_admin(caller: Caller | None, user_id: str) -> Caller:
    who = caller_of(caller)
    if not who.is_admin and who.user_id != user_id:
        raise CodeError(1002, f"no permission for user {user_id}")
    return who


def check(condition: bool) -> None:
    """A failed ``Check()``: raised in the API process, so errDlt stays empty."""
    if not condition:
        raise CodeError.local(1001)
