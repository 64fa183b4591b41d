"""``/im/*``: the reverse proxy to OpenIM's REST API.

The edge (``edge/middleware.py``: operationID, metrics and the access line, the error
envelope) runs first; then the /im chain, one concern per step, in the
order of DESIGN section 2:

authenticate (logged in, not banned: ``auth.logged_in_caller``) -> apply_route_policy -> resolve_im_token
-> recover_token_errors -> forward

:func:`proxy` awaits the steps one after another instead of nesting them as
middlewares: a step that is done leaves no frame behind, so the waits of the
later ones (the upstream) resume through a short await chain. Each step
refuses by raising; the edge turns that into the envelope.

Every request body is read in full (its digest is signed, and the route
policy inspects it) within ``MAX_BODY_BYTES``. Answers are read up to
``PEEK_BYTES``: a whole envelope is inspected (token errors trigger
recovery, other errors lose OpenIM's internals), a larger answer, which
cannot be an error envelope, is streamed on.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from messenger_gw import edge, errors
from messenger_gw.auth import Caller, logged_in_caller
from messenger_gw.edge import forwarded_for, is_blank, parse_json_object
from messenger_gw.metrics import METRICS, ROUTE_LABEL
from messenger_gw.moderation import RATE_LIMITS
from messenger_gw.openim import (
    ADMIN_TOKENS,
    CONVERSATION_ACCESS,
    IM_TOKENS,
    OPENIM,
    Answer,
    Exchange,
    OpenIMAPIError,
    OpenIMProtocolError,
    TokenError,
    read_envelope,
)
from messenger_gw.operation_id import OPERATION_ID
from messenger_gw.settings import SETTINGS, Settings
from messenger_gw.store import StoreError

from .route_policy import ROUTE_TABLE, NotAParty, Route, RouteNotFound

log = logging.getLogger(__name__)

UNLISTED_LABEL = "/im/{unlisted}"
JSON = "application/json"

# The lists the legacy chat service's proxy drops too (edge/forwarding.py).
HOP_BY_HOP, CLIENT_CREDENTIALS = edge.HOP_BY_HOP, edge.CLIENT_CREDENTIALS
# Set by the gateway itself, or meaningless once the body may have been rewritten.
REPLACED = frozenset(
    {"host", "content-length", "content-type", "accept-encoding", "x-forwarded-for", "x-forwarded-proto",
     "x-forwarded-host", "x-real-ip", "forwarded", "x-request-api"}
)  # fmt: skip
SDK_ONLY = frozenset({"reqfuncname"})  # the OpenIM SDK's name for the call it makes; OpenIM reads nothing of it
NOT_FORWARDED = HOP_BY_HOP | CLIENT_CREDENTIALS | REPLACED | SDK_ONLY
CHANGED_GROUPS: web.RequestKey[set[str]] = web.RequestKey("changed_groups", set)


class TokenRejected(errors.GatewayError):
    """OpenIM refused the caller's token even after a fresh one: log in again. Keeps OpenIM's code."""

    status = 401

    def __init__(self, error: OpenIMAPIError, *, detail: str = "OpenIM refused a fresh token too") -> None:
        super().__init__(error.msg, detail=detail)
        self.code = error.errcode


def add_routes(app: web.Application) -> None:
    app.router.add_post("/im/{path:.*}", proxy)


async def proxy(request: web.Request) -> web.StreamResponse:
    """The /im chain: each step one concern, awaited in DESIGN section 2's order; any step may refuse."""
    caller = await logged_in_caller(request)
    route, body = await apply_route_policy(request, caller)
    try:
        return await recover_token_errors(request, caller, route, body)
    finally:
        # Whatever OpenIM answered (a timeout may still have changed the group), before the client hears.
        if CHANGED_GROUPS in request:
            await forget_changed_groups(request)


# -- the chain ----------------------------------------------------------------------------------


async def apply_route_policy(request: web.Request, caller: Caller) -> tuple[Route, bytes]:
    """The live route for the path, and the body to forward (its bound fields checked or filled in)."""
    config = request.app
    path = "/" + request.match_info["path"]
    route = config[ROUTE_TABLE].live(path, config[SETTINGS].phase)
    if route is None:
        request[ROUTE_LABEL] = UNLISTED_LABEL
        raise RouteNotFound("No such route", detail=f"{path} is not in the route table for this phase")
    request[ROUTE_LABEL] = route.label
    assert caller.user_id is not None
    if route.rate_class is not None:  # before the body is read: a refused request costs no more
        await config[RATE_LIMITS].hit(caller.user_id, route.rate_class)
    raw = await request.read()
    if route.opaque:  # OpenIM reads the caller from the token there, whatever the body says
        return route, raw
    empty = is_blank(raw)
    body = {} if empty else parse_json_object(raw)
    route.apply(body, caller.user_id, caller.platform_id)
    if route.conversations or route.groups:
        access, operation_id = config[CONVERSATION_ACCESS], request[OPERATION_ID]
        for conversation_id in route.named_conversations(body):
            if not await access.may_read(caller.user_id, conversation_id, operation_id):
                raise NotAParty(f"Not a party to conversation {conversation_id}")
        for group_id in route.named_groups(body):
            if not await access.is_member(caller.user_id, group_id, operation_id):
                raise NotAParty(f"Not a member of group {group_id}")
    if route.changes_members:
        request[CHANGED_GROUPS] = route.changed_groups(body)
    return route, orjson.dumps(body) if empty or route.reads_body else raw


async def forget_changed_groups(request: web.Request) -> None:
    """The request may have changed who is in these groups: no replica may go on by what it remembered."""
    groups: set[str] = request[CHANGED_GROUPS]
    try:
        await request.app[CONVERSATION_ACCESS].forget_groups(groups)
    except StoreError as exc:
        # The write happened and is answered. Forgotten here already; elsewhere the answers expire
        # within MEMBERSHIP_TTL, or go when a replica that lost the store with us resubscribes.
        log.warning("group membership change not published to the other replicas: %s", exc)


async def resolve_im_token(request: web.Request, caller: Caller, route: Route) -> str:
    config = request.app
    if route.token_mode == "admin":
        return await config[ADMIN_TOKENS].get()
    if caller.im_token is not None:  # an OpenIM SDK client's own, verified as the one stored
        return caller.im_token
    assert caller.user_id is not None
    token = await config[IM_TOKENS].resolve(caller.user_id, caller.platform_id, operation_id=request[OPERATION_ID])
    return token.token


async def recover_token_errors(request: web.Request, caller: Caller, route: Route, body: bytes) -> web.StreamResponse:
    """Forward with the resolved token; on 1501-1507: drop it everywhere, get a new one once, replay once;
    then 401 with OpenIM's code. An imToken caller's own token is not replaced: a new one would not be its."""
    token = await resolve_im_token(request, caller, route)
    try:
        return await forward(request, caller, route, body, token)
    except TokenError as first:
        if token == caller.im_token:
            raise TokenRejected(first, detail="OpenIM refused the client's own imToken") from None
        config = request.app
        log.info("OpenIM refused the %s token (errCode %d); replacing it", route.token_mode, first.errcode)
        if route.token_mode == "admin":
            config[ADMIN_TOKENS].invalidate(token)
            token = await config[ADMIN_TOKENS].get()
        else:
            assert caller.user_id is not None
            fresh = await config[IM_TOKENS].replace(
                caller.user_id, caller.platform_id, token, operation_id=request[OPERATION_ID]
            )
            token = fresh.token
    metrics = request.app[METRICS]
    try:
        response = await forward(request, caller, route, body, token)
    except TokenError as second:
        metrics.im_token_recoveries.labels("failed").inc()
        raise TokenRejected(second) from None
    metrics.im_token_recoveries.labels("recovered").inc()
    return response


# -- forwarding -----------------------------------------------------------------------------------


async def forward(request: web.Request, caller: Caller, route: Route, body: bytes, token: str) -> web.StreamResponse:
    if route.answer == "self_user_info":
        return await _self_user_info(request, caller, token)
    headers = _upstream_headers(request, token, request.app[SETTINGS], opaque=route.opaque)
    query = request.raw_path.partition("?")[2]
    exchange = request.app[OPENIM].exchange(route.path, body, headers, query=query)
    async with exchange as answer:
        return await _relay(request, route, answer, exchange)


def _upstream_headers(request: web.Request, token: str, settings: Settings, *, opaque: bool) -> list[tuple[str, str]]:
    headers = edge.passed_headers(request, NOT_FORWARDED)
    # All in NOT_FORWARDED, so none is there yet: added, not replaced.
    headers += [
        ("token", token),
        ("operationID", request[OPERATION_ID]),
        # An opaque body is what the client sent: protobuf on the /jssdk routes, which OpenIM tells by it.
        ("Content-Type", request.headers.get("Content-Type", JSON) if opaque else JSON),
        ("X-Forwarded-For", forwarded_for(request, settings.trusted_proxies)),
        ("X-Forwarded-Proto", request.scheme),
        # The base of the URLs OpenIM answers on /object/* (setURLPrefix): the client's /im, never its Host.
        ("X-Request-Api", settings.public_im_url),
    ]
    return headers


async def _relay(request: web.Request, route: Route, answer: Answer, exchange: Exchange) -> web.StreamResponse:
    # OpenIM answers its envelope with 200, or 400 for some bad JSON.
    if answer.status not in (200, 400):
        raise OpenIMProtocolError(f"OpenIM answered HTTP {answer.status}")
    head = await edge.peek(exchange.read, answer.at_eof)
    if not answer.at_eof():
        if answer.status != 200:  # too large to be an error envelope, and not one to pass on unread
            raise OpenIMProtocolError(f"OpenIM answered HTTP {answer.status} with a large body")
        return await _stream(request, answer, head, exchange)
    envelope = read_envelope(answer.status, head)
    code = envelope["errCode"]
    if code != 0:
        error = OpenIMAPIError.from_envelope(code, str(envelope.get("errMsg", "")), "")
        if isinstance(error, TokenError):  # recover_token_errors replaces the token and replays
            raise error
        request.app[METRICS].openim_failed(route.path, "errcode", code)
        return edge.whole_answer(answer.status, orjson.dumps(_scrubbed(envelope)), content_type=JSON)
    return edge.whole_answer(answer.status, head, content_type=JSON)


def _scrubbed(envelope: dict[str, Any]) -> dict[str, Any]:
    """OpenIM's error for the client, without internals: stack traces, quoted tokens, long details."""
    msg, detail = str(envelope.get("errMsg", "")), str(envelope.get("errDlt", ""))
    return {
        "errCode": envelope["errCode"],
        "errMsg": msg.splitlines()[0][:200] if msg else "",
        "errDlt": detail if len(detail) <= 200 and "\n" not in detail and "token" not in detail.lower() else "",
    }


async def _stream(request: web.Request, answer: Answer, head: bytes, exchange: Exchange) -> web.StreamResponse:
    """Pass a large answer on at the client's pace: OpenIM's deadlines count only the waits in
    ``exchange.read``, and each write to the client has ``CLIENT_WRITE_TIMEOUT`` of its own."""
    response = web.StreamResponse(status=answer.status)
    response.content_type = JSON
    write_timeout = request.app[SETTINGS].client_write_timeout
    return await edge.stream_answer(request, response, head, exchange.read, write_timeout=write_timeout)


async def _self_user_info(request: web.Request, caller: Caller, token: str) -> web.StreamResponse:
    data = await request.app[OPENIM].call(
        "/user/get_users_info",
        {"userIDs": [caller.user_id]},
        operation_id=request[OPERATION_ID],
        token=token,
    )
    infos = data.get("usersInfo") if isinstance(data, dict) else None
    if not infos:
        raise RouteNotFound("The caller is not registered in OpenIM")
    body = orjson.dumps({"errCode": 0, "errMsg": "", "errDlt": "", "data": infos[0]})
    return edge.whole_answer(200, body, content_type=JSON)
