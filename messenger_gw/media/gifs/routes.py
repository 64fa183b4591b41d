"""``GET /gifs/search`` and ``GET /gifs/trending`` (docs/media.md)."""

from __future__ import annotations

from aiohttp import web

from messenger_gw.media.caller import logged_in_user

from .providers import Kind
from .search import GIF_SEARCH


def add_routes(app: web.Application) -> None:
    app.router.add_get("/gifs/search", search)
    app.router.add_get("/gifs/trending", trending)


async def search(request: web.Request) -> web.Response:
    return await _answer(request, "search")


async def trending(request: web.Request) -> web.Response:
    return await _answer(request, "trending")


async def _answer(request: web.Request, kind: Kind) -> web.Response:
    user_id = await logged_in_user(request)
    body = await request.app[GIF_SEARCH].answer(user_id, kind, request.query)
    return web.Response(body=body, content_type="application/json")
