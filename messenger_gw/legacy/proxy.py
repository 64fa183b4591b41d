"""``/legacy/*``: the old chat service behind the gateway, route by route, phase by phase.

A request to a route of the legacy table passes, in order (``docs/legacy-chat.md``):

authenticate (logged in, not banned) -> the route's verdict in this phase -> forward

The caller is authenticated as on ``/im`` (the same authenticator: a signature, a JWT, an imToken) and
reaches the old service under the identity the gateway established, in the configured headers
(``LEGACY_USER_HEADER``, ``LEGACY_PLATFORM_HEADER``), never with the client's own credentials. A route
outside its phases answers 410 Gone with the envelope and the ``/im`` route that replaces it.

Calls go through a pool of their own (``openim``'s ``UpstreamPool``: bounded, keep-alive, strict about
what it reads) with the read and total deadlines of ``LEGACY_*_TIMEOUT``, through the same ``Exchange``
as calls to OpenIM: a failed connect is retried once, nothing that reached the old service ever is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from messenger_gw import errors
from messenger_gw.auth import Caller, logged_in_caller
from messenger_gw.edge import (
    CLIENT_CREDENTIALS,
    HOP_BY_HOP,
    forwarded_for,
    passed_headers,
    peek,
    stream_answer,
    whole_answer,
)
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.openim import Deadlines, Exchange, UpstreamError, UpstreamPool
from messenger_gw.operation_id import OPERATION_ID
from messenger_gw.settings import SETTINGS, LegacySettings, Network

from .routes import PREFIX, LegacyRoute, LegacyRouteTable

log = logging.getLogger(__name__)

# The old service's answer header fields that reach the client; the rest (its cookies, its CORS answers,
# its internals) stay behind. Content-Encoding is not among them: the pool decodes.
ANSWER_HEADERS = frozenset(
    {"content-type", "cache-control", "etag", "last-modified", "expires", "location", "retry-after",
     "content-disposition", "content-language", "vary", "link"}
)  # fmt: skip
# Set by the gateway itself for the old service.
REPLACED = frozenset(
    {"host", "content-length", "accept-encoding", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
     "x-real-ip", "forwarded"}
)  # fmt: skip


class LegacyUnavailable(errors.BadUpstream):
    pass


class LegacyTimeout(errors.UpstreamTimeout):
    pass


class RouteGone(errors.GatewayError):
    """The route is not live in this phase: 410 with the envelope; ``errDlt`` and ``Link`` name its successor."""

    status = 410
    code = errors.GONE
    level = logging.INFO  # every call of an old client once its route is retired: no warning each

    def __init__(self, route: LegacyRoute, phase: int) -> None:
        successor = f": use {route.replaced_by}" if route.replaced_by else ""
        super().__init__(f"This route of the legacy chat service is retired{successor}", detail=f"phase {phase}")
        self.replaced_by = route.replaced_by

    def response(self) -> web.Response:
        response = errors.envelope_response(self.status, self.code, self.message, self.replaced_by or "")
        if self.replaced_by:
            response.headers["Link"] = f'<{self.replaced_by}>; rel="successor-version"'
        return response


class LegacyService:
    """The old chat service at ``base_url``, through ``pool``: what an :class:`Exchange` runs on."""

    def __init__(self, pool: UpstreamPool, base_url: str, settings: LegacySettings, *, metrics: Metrics) -> None:
        self.pool = pool
        self.base_path = base_url.rstrip("/")[len(pool.origin) :]
        self.deadlines = Deadlines(read=settings.timeouts.read, total=settings.timeouts.total)
        self._metrics = metrics
        user_header, platform_header = settings.user_header, settings.platform_header
        self._user_header, self._platform_header = user_header, platform_header
        self._extra = settings.extra_headers()
        # The client may not speak for the gateway: whatever it sends under these names is dropped.
        own = {user_header.lower(), *((platform_header.lower(),) if platform_header else ())}
        self._dropped = HOP_BY_HOP | CLIENT_CREDENTIALS | REPLACED | own | {name.lower() for name, _ in self._extra}

    def headers(self, request: web.Request, caller: Caller, trusted: Sequence[Network]) -> list[tuple[str, str]]:
        """The client's header fields that pass, then the caller's identity and the configured fields."""
        assert caller.user_id is not None
        headers = passed_headers(request, self._dropped)
        headers += [
            (self._user_header, caller.user_id),
            *self._extra,
            ("X-Request-ID", request[OPERATION_ID]),
            ("X-Forwarded-For", forwarded_for(request, trusted)),
            ("X-Forwarded-Proto", request.scheme),
        ]
        if self._platform_header is not None:
            headers.append((self._platform_header, str(caller.platform_id)))
        return headers

    def exchange_done(self, label: str, failure: BaseException | None, seconds: float) -> BaseException | None:
        """Time the call; a transport failure or a passed deadline becomes the gateway's 502 or 504, counted."""
        self._metrics.legacy_duration.labels(label).observe(seconds)
        if isinstance(failure, TimeoutError) or (isinstance(failure, UpstreamError) and failure.kind == "timeout"):
            self._metrics.legacy_errors.labels(label, "timeout").inc()
            return LegacyTimeout("The legacy chat service did not answer in time", detail=f"{label}: {failure}")
        if isinstance(failure, UpstreamError):
            self._metrics.legacy_errors.labels(label, failure.kind).inc()
            what = "is unreachable" if failure.kind == "connect" else "failed"
            return LegacyUnavailable(f"The legacy chat service {what}", detail=f"{label}: {failure}")
        return failure


LEGACY_SERVICE: web.AppKey[LegacyService] = web.AppKey("legacy_service", LegacyService)


def add_routes(app: web.Application, table: LegacyRouteTable) -> None:
    """One aiohttp route per method of every route in the table, under ``/legacy``: aiohttp's router
    matches the patterns, and a path none matches is its 404."""
    for route in table:
        resource = app.router.add_resource(route.label)
        for method in route.methods:
            resource.add_route(method, _handler(route))


def _handler(route: LegacyRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await proxy(request, route)

    return handle


async def proxy(request: web.Request, route: LegacyRoute) -> web.StreamResponse:
    """Authenticate, check the ban, then the route's verdict in this phase: forwarded or 410; counted by verdict."""
    verdict = "refused"
    try:
        config = request.app
        caller = await logged_in_caller(request)
        phase = config[SETTINGS].phase
        if not route.live(phase):
            verdict = "gone"
            raise RouteGone(route, phase)
        verdict = "failed"
        response = await forward(request, route, caller)
        verdict = "forwarded"
        return response
    finally:
        request.app[METRICS].legacy_requests.labels(route.label, verdict).inc()


async def forward(request: web.Request, route: LegacyRoute, caller: Caller) -> web.StreamResponse:
    service = request.app[LEGACY_SERVICE]
    body = await request.read()
    headers = service.headers(request, caller, request.app[SETTINGS].trusted_proxies)
    path, _, query = request.raw_path.removeprefix(PREFIX).partition("?")
    exchange = Exchange(service, path, body, headers, query, request.method, label=route.label)
    async with exchange as answer:
        head = await peek(exchange.read, answer.at_eof)
        if not answer.at_eof():
            response = web.StreamResponse(status=answer.status, headers=answer.headers)
            write_timeout = request.app[SETTINGS].client_write_timeout
            return await stream_answer(request, response, head, exchange.read, write_timeout=write_timeout)
    return whole_answer(answer.status, head, headers=answer.headers)
