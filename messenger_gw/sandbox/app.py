"""The sandbox as an aiohttp app, answering the way OpenIM's gin router does.

Per POST: ``operationID`` is checked first, then ``token`` (except on the two
token-free prefixes), and only then is the route looked up, so a POST to an
unknown path without headers gets ``1001``, not a 404 (contract 1.2). GET
requests pass the header checks and find no route. gzip is used when the
caller accepts it; CORS answers as ``tools:mw/gin.go`` does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_response import ContentCoding

from . import (  # noqa: F401 - they register routes
    auth_routes,
    conversation_routes,
    friend_routes,
    group_routes,
    jssdk_routes,
    msg_routes,
    third_routes,
    user_routes,
)
from .envelope import Body, CodeError, envelope
from .objects import BUCKET
from .routing import RAW_BODY_ROUTES, ROUTES, TOKEN_FREE_PREFIXES, RawBody
from .state import OPERATION_ID, STORAGE_ENDPOINT, URL_PREFIX, Caller, Sandbox
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

SANDBOX: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)
MAX_BODY_BYTES = 64 * 1024 * 1024

# tools v0.0.50-alpha.67 mw/gin.go CorsHandler: on every answer, OPTIONS included.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Expose-Headers": "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers,"
    "Cache-Control,Content-Language,Content-Type,Expires,Last-Modified,Pragma,FooBar",
    "Access-Control-Max-Age": "172800",
    "Access-Control-Allow-Credentials": "false",
}


def create_sandbox_app(sandbox: Sandbox | None = None, *, middlewares: Sequence[Middleware] = ()) -> web.Application:
    """The sandbox app; ``middlewares`` let tests record or reshape what reaches "OpenIM"."""
    # gin sets no bound on a body, and MinIO takes parts of 5 MiB and more: aiohttp's 1 MiB would refuse them.
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[SANDBOX] = sandbox = sandbox or Sandbox()
    app.cleanup_ctx.append(_webhook_sender)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    sandbox = app[SANDBOX]
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(session)
        sender.url = sandbox.webhook_url
        sandbox.webhooks = sender
        yield
        await sender.flush()
        sandbox.webhooks = None


async def _dispatch(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    path = request.path
    if path == f"/{BUCKET}" or path.startswith(f"/{BUCKET}/"):  # the object store's own address, in OpenIM
        return await sandbox.objects.storage_handler(request)
    if request.method == "OPTIONS":
        return web.Response(text='"Options Request!"', content_type="application/json", headers=CORS_HEADERS)
    STORAGE_ENDPOINT.set(f"{request.scheme}://{request.host}")
    if request.method == "GET" and path.startswith("/object/"):
        redirect = third_routes.object_redirect(sandbox, request)
        redirect.headers.update(CORS_HEADERS)
        return redirect
    caller: Caller | None = None
    try:
        if request.method == "POST":
            sandbox.calls[path] += 1
            URL_PREFIX.set(third_routes.url_prefix(request.headers, request.host, request.secure))
            OPERATION_ID.set(request.headers.get("operationID", ""))
            if not request.headers.get("operationID"):
                raise CodeError.local(1001)
            if not path.startswith(TOKEN_FREE_PREFIXES):
                token = request.headers.get("token")
                if not token:
                    raise CodeError.local(1001)
                caller, _ = sandbox.verify_token(token)
        handler = ROUTES.get(path) if request.method == "POST" else None
        if handler is None:
            return web.Response(status=404, text="404 page not found", headers=CORS_HEADERS)
        raw = await request.read()
        body = RawBody(request.headers.get("Content-Type", ""), raw) if path in RAW_BODY_ROUTES else _decode(raw)
        data = handler(sandbox, caller, body)
        if inspect.isawaitable(data):
            data = await data
        reply = envelope(data)
    except CodeError as exc:
        reply = envelope(error=exc)
    response = web.Response(
        body=orjson.dumps(reply), content_type="application/json", charset="utf-8", headers=CORS_HEADERS
    )
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(ContentCoding.gzip)
    return response


def _decode(raw: bytes) -> Body:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = "EOF" if not raw.strip() else f"invalid character in JSON: {exc.msg}"
        raise CodeError(1001, "", msg=msg) from None
    if value is None:  # Go decodes `null` into a struct as "no fields set"
        value = {}
    if not isinstance(value, dict):
        raise CodeError(1001, "", msg="json: cannot unmarshal non-object into Go value of type struct")
    return Body(value)
