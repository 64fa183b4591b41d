"""``/im/*``: the reverse proxy to OpenIM's REST API.

The app-wide middlewares (operationID, metrics and the access line, the
error envelope) run first; then the /im chain, one concern per middleware,
in the order of DESIGN section 2:

authenticate -> check_ban -> apply_route_policy -> resolve_im_token -> recover_token_errors -> forward

The chain is composed once into the route's handler (:func:`add_routes`)
rather than mounted as a sub-application: the same middlewares, without a
second routing and dispatch layer on every request.

Every request body is read in full (its digest is signed, and the route
policy inspects it) within ``MAX_BODY_BYTES``. Answers are read up to
``PEEK_BYTES``: a whole envelope is inspected (token errors trigger
recovery, other errors lose OpenIM's internals), a larger answer, which
cannot be an error envelope, is streamed on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from . import errors
from .admin_token import ADMIN_TOKENS
from .authentication import AUTHENTICATOR, Caller
from .bans import BANS
from .client_ip import forwarded_for
from .conversation_access import CONVERSATION_ACCESS
from .im_tokens import IM_TOKENS
from .metrics import METRICS, ROUTE_LABEL
from .openim import OPENIM, OpenIMAPIError, OpenIMProtocolError, TokenError, read_envelope
from .operation_id import OPERATION_ID
from .route_policy import ROUTE_TABLE, NotAParty, Route, RouteNotFound
from .settings import SETTINGS, Network

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
ROUTE: web.RequestKey[Route] = web.RequestKey("route", Route)
BODY: web.RequestKey[bytes] = web.RequestKey("body", bytes)
IM_TOKEN: web.RequestKey[str] = web.RequestKey("im_token", str)

PEEK_BYTES = 64 * 1024
COMPRESS_FROM_BYTES = 1024
UNLISTED_LABEL = "/im/{unlisted}"

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate",
     "proxy-authorization", "proxy-connection"}
)  # fmt: skip
CLIENT_CREDENTIALS = frozenset(
    {"authorization", "cookie", "signature", "signature-input", "content-digest", "token", "operationid",
     "x-request-id", "x-platform-id"}
)  # fmt: skip
# Set by the gateway itself, or meaningless once the body may have been rewritten.
REPLACED = frozenset(
    {"host", "content-length", "content-type", "accept-encoding", "x-forwarded-for", "x-forwarded-proto",
     "x-forwarded-host", "x-real-ip", "forwarded"}
)  # fmt: skip
NOT_FORWARDED = HOP_BY_HOP | CLIENT_CREDENTIALS | REPLACED


class TokenRejected(errors.GatewayError):
    """OpenIM refused the caller's token even after a fresh one: log in again. Keeps OpenIM's code."""

    status = 401

    def __init__(self, error: OpenIMAPIError) -> None:
        super().__init__(error.msg, detail="OpenIM refused a fresh token too")
        self.code = error.errcode


def add_routes(app: web.Application) -> None:
    handler: Handler = forward
    for middleware in reversed(CHAIN):
        handler = functools.partial(middleware, handler=handler)
    app.router.add_post("/im/{path:.*}", handler)


# -- the chain ----------------------------------------------------------------------------------


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    authenticator = request.app[AUTHENTICATOR]
    caller = await authenticator.authenticate(request)
    if caller.user_id is None:
        raise authenticator.rejected("not_logged_in")
    request[CALLER] = caller
    return await handler(request)


@web.middleware
async def check_ban(request: web.Request, handler: Handler) -> web.StreamResponse:
    user_id = request[CALLER].user_id
    assert user_id is not None
    await request.app[BANS].check(user_id)
    return await handler(request)


@web.middleware
async def apply_route_policy(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app
    path = "/" + request.match_info["path"]
    route = config[ROUTE_TABLE].live(path, config[SETTINGS].phase)
    if route is None:
        request[ROUTE_LABEL] = UNLISTED_LABEL
        raise RouteNotFound("No such route", detail=f"{path} is not in the route table for this phase")
    request[ROUTE_LABEL] = route.label
    caller = request[CALLER]
    assert caller.user_id is not None
    raw = await request.read()
    empty = not raw.strip()
    body = {} if empty else await errors.read_json_object(request)
    changed = route.apply(body, caller.user_id, caller.platform_id)
    access, operation_id = config[CONVERSATION_ACCESS], request[OPERATION_ID]
    for conversation_id in route.named_conversations(body):
        if not await access.may_read(caller.user_id, conversation_id, operation_id):
            raise NotAParty(f"Not a party to conversation {conversation_id}")
    for group_id in route.named_groups(body):
        if not await access.is_member(caller.user_id, group_id, operation_id):
            raise NotAParty(f"Not a member of group {group_id}")
    request[ROUTE] = route
    request[BODY] = orjson.dumps(body) if changed or empty else raw
    return await handler(request)


@web.middleware
async def resolve_im_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app
    if request[ROUTE].token_mode == "admin":
        request[IM_TOKEN] = await config[ADMIN_TOKENS].get()
    else:
        caller = request[CALLER]
        assert caller.user_id is not None
        token = await config[IM_TOKENS].resolve(caller.user_id, caller.platform_id, operation_id=request[OPERATION_ID])
        request[IM_TOKEN] = token.token
    return await handler(request)


@web.middleware
async def recover_token_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On 1501-1507: drop the token everywhere, get a new one once, replay once; then 401 with OpenIM's code."""
    try:
        return await handler(request)
    except TokenError as first:
        config = request.app
        failed = request[IM_TOKEN]
        log.info("OpenIM refused the %s token (errCode %d); replacing it", request[ROUTE].token_mode, first.errcode)
        if request[ROUTE].token_mode == "admin":
            config[ADMIN_TOKENS].invalidate(failed)
            request[IM_TOKEN] = await config[ADMIN_TOKENS].get()
        else:
            caller = request[CALLER]
            assert caller.user_id is not None
            fresh = await config[IM_TOKENS].replace(
                caller.user_id, caller.platform_id, failed, operation_id=request[OPERATION_ID]
            )
            request[IM_TOKEN] = fresh.token
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except TokenError as second:
        metrics.im_token_recoveries.labels("failed").inc()
        raise TokenRejected(second) from None
    metrics.im_token_recoveries.labels("recovered").inc()
    return response


CHAIN = (authenticate, check_ban, apply_route_policy, resolve_im_token, recover_token_errors)


# -- forwarding -----------------------------------------------------------------------------------


async def forward(request: web.Request) -> web.StreamResponse:
    route = request[ROUTE]
    if route.answer == "self_user_info":
        return await _self_user_info(request)
    headers = _upstream_headers(request, request.app[SETTINGS].trusted_proxies)
    query = request.raw_path.partition("?")[2]
    async with request.app[OPENIM].exchange(route.path, request[BODY], headers, query=query) as upstream:
        return await _relay(request, upstream)


def _upstream_headers(request: web.Request, trusted: Sequence[Network]) -> CIMultiDict[str]:
    named_by_connection = {
        name.strip().lower() for value in request.headers.getall("Connection", []) for name in value.split(",")
    }
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if name.lower() not in NOT_FORWARDED
        and name.lower() not in named_by_connection
        and not name.lower().startswith("proxy-")
    )
    headers["token"] = request[IM_TOKEN]
    headers["operationID"] = request[OPERATION_ID]
    headers["Content-Type"] = "application/json"
    headers["X-Forwarded-For"] = forwarded_for(request, trusted)
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    # OpenIM answers its envelope with 200, or 400 for some bad JSON.
    if upstream.status not in (200, 400):
        raise OpenIMProtocolError(f"OpenIM answered HTTP {upstream.status}")
    head = bytearray()
    while len(head) <= PEEK_BYTES and not upstream.content.at_eof():
        head += await upstream.content.read(PEEK_BYTES + 1 - len(head))
    if not upstream.content.at_eof():
        if upstream.status != 200:  # too large to be an error envelope, and not one to pass on unread
            raise OpenIMProtocolError(f"OpenIM answered HTTP {upstream.status} with a large body")
        return await _stream(request, upstream, bytes(head))
    envelope = read_envelope(upstream.status, bytes(head))
    code = envelope["errCode"]
    if 1501 <= code <= 1507:
        raise OpenIMAPIError.from_envelope(code, str(envelope.get("errMsg", "")), "")
    if code != 0:
        request.app[METRICS].openim_failed(request[ROUTE].path, "errcode", code)
        return _json_response(request, upstream.status, orjson.dumps(_scrubbed(envelope)))
    return _json_response(request, upstream.status, bytes(head))


def _scrubbed(envelope: dict[str, Any]) -> dict[str, Any]:
    """OpenIM's error for the client, without internals: stack traces, quoted tokens, long details."""
    msg, detail = str(envelope.get("errMsg", "")), str(envelope.get("errDlt", ""))
    return {
        "errCode": envelope["errCode"],
        "errMsg": msg.splitlines()[0][:200] if msg else "",
        "errDlt": detail if len(detail) <= 200 and "\n" not in detail and "token" not in detail.lower() else "",
    }


def _json_response(request: web.Request, status: int, body: bytes) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    if len(body) >= COMPRESS_FROM_BYTES:
        response.enable_compression()
    return response


async def _stream(request: web.Request, upstream: aiohttp.ClientResponse, head: bytes) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status)
    response.content_type = "application/json"
    response.enable_compression()
    await response.prepare(request)
    await response.write(head)
    async for chunk in upstream.content.iter_chunked(PEEK_BYTES):
        await response.write(chunk)
    await response.write_eof()
    return response


async def _self_user_info(request: web.Request) -> web.StreamResponse:
    caller = request[CALLER]
    data = await request.app[OPENIM].call(
        "/user/get_users_info",
        {"userIDs": [caller.user_id]},
        operation_id=request[OPERATION_ID],
        token=request[IM_TOKEN],
    )
    infos = data.get("usersInfo") if isinstance(data, dict) else None
    if not infos:
        raise RouteNotFound("The caller is not registered in OpenIM")
    body = orjson.dumps({"errCode": 0, "errMsg": "", "errDlt": "", "data": infos[0]})
    return _json_response(request, 200, body)
