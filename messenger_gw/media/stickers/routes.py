"""``GET /stickers/packs`` and ``GET /stickers/packs/{id}``, with ETags and cache headers (docs/media.md)."""

from __future__ import annotations

from aiohttp import web

from messenger_gw import errors
from messenger_gw.media.caller import logged_in_user

from .catalog import STICKER_CATALOG, Resource


def add_routes(app: web.Application) -> None:
    app.router.add_get("/stickers/packs", packs)
    app.router.add_get("/stickers/packs/{pack_id}", pack)


async def packs(request: web.Request) -> web.Response:
    await logged_in_user(request)
    return _conditional(request, request.app[STICKER_CATALOG].current().index)


async def pack(request: web.Request) -> web.Response:
    await logged_in_user(request)
    resource = request.app[STICKER_CATALOG].current().packs.get(request.match_info["pack_id"])
    if resource is None:
        raise errors.NotFound("No such sticker pack")
    return _conditional(request, resource)


def _conditional(request: web.Request, resource: Resource) -> web.Response:
    """The resource, or 304 when the client holds this version (If-None-Match, weak comparison: RFC 9110 13.1.2)."""
    # private: the answers are for logged-in users, so no shared cache keeps them.
    headers = {"Cache-Control": f"private, max-age={request.app[STICKER_CATALOG].max_age}"}
    tags = request.if_none_match or ()
    if any(tag.value in (resource.etag, "*") for tag in tags):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=resource.body, content_type="application/json", headers=headers)
    response.etag = resource.etag
    return response
