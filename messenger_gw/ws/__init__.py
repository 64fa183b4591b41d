"""The WebSocket guard (``/ws``): OpenIM's client WebSocket relayed to its msg-gateway, every client request checked
before OpenIM sees it, and the sockets ended by the gateway on a ban, a logout or a replaced imToken.
"""

from aiohttp import web

from .guard import WS_GUARD, WsGuard, guarding
from .policy import CLIENT_CONTENT_TYPES, REASONS, FramePolicy, SendRate

__all__ = [
    "CLIENT_CONTENT_TYPES",
    "REASONS",
    "WS_GUARD",
    "FramePolicy",
    "SendRate",
    "WsGuard",
    "add_routes",
    "guarding",
]


async def _handle(request: web.Request) -> web.StreamResponse:
    return await request.app[WS_GUARD].handle(request)


async def _drain(app: web.Application) -> None:
    guard = app.get(WS_GUARD)
    if guard is not None:
        await guard.drain()


def add_routes(app: web.Application) -> None:
    """``GET /ws``, and the sockets closed with "going away" when the app shuts down."""
    app.router.add_get("/ws", _handle)
    app.on_shutdown.append(_drain)
