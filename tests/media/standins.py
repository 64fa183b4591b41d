"""Stand-ins for GIPHY's and KLIPY's GIF APIs, shaped as their public documentation describes them.

GIPHY (developers.giphy.com/docs/api/endpoint/search/, .../schema/image-object/, .../schema/meta-object/,
.../response-codes/, .../synthetic-response/): ``GET /v1/gifs/search|trending`` with ``api_key``, ``q`` (414
past 50 characters), ``limit``, ``offset``, ``rating``; the answer ``{data, pagination, meta}`` with every
rendition's numbers written as strings.

KLIPY (its native API as docs/media.md cites it): ``GET /api/v1/{app_key}/gifs/search|trending`` with
``page``, ``per_page`` (8 to 50), ``customer_id``, ``content_filter``, ``q``; the answer ``{"result": true,
"data": {"data": [item], "current_page", "per_page", "has_next"}}``, items with ``file.{hd,md,sm,xs}.
{gif,webp,mp4,jpg}`` and advertisements among them as ``"type": "ad"``.

``mode`` makes either fail the way a provider can: ``error`` (HTTP 500), ``refuse`` (HTTP 429), ``slow``
(answers after ``delay`` seconds), ``garbage`` (not JSON), ``redirect`` (302 elsewhere), ``synthetic``
(GIPHY's synthetic response), ``no_result`` (KLIPY's ``result: false``), ``huge`` (an answer over 4 MiB).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from aiohttp import web

GIPHY_KEY = "giphy-secret-key-0123456789"
KLIPY_KEY = "klipy/secret key+0123456789"  # characters a path segment must encode


@dataclasses.dataclass
class Seen:
    path: str
    query: dict[str, str]


class StandIn:
    def __init__(self, total: int = 120) -> None:
        self.total = total
        self.mode = "ok"
        self.delay = 0.0  # before every answer, in any mode
        self.seen: list[Seen] = []

    async def _misbehave(self, request: web.Request) -> web.StreamResponse | None:
        self.seen.append(Seen(request.path, dict(request.query)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "error":
            return web.Response(status=500, text=f"internal error for {request.path_qs}")  # quotes the key
        if self.mode == "refuse":
            return web.json_response({"meta": {"status": 429, "msg": "Too Many Requests"}}, status=429)
        if self.mode == "garbage":
            return web.Response(text="<html>upstream proxy error</html>", content_type="text/html")
        if self.mode == "redirect":
            raise web.HTTPFound(f"/elsewhere?{request.query_string}")
        if self.mode == "huge":
            return web.Response(body=b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}', content_type="application/json")
        return None


def _rendition(url: str, width: int, height: int, size: int, *, strings: bool) -> dict[str, Any]:
    as_number = str if strings else int
    return {"url": url, "width": as_number(width), "height": as_number(height), "size": as_number(size)}


class GiphyStandIn(StandIn):
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/gifs/{kind:search|trending}", self._gifs)
        return app

    @staticmethod
    def gif(n: int) -> dict[str, Any]:
        media = f"https://media.giphy.example/media/g{n}"
        return {
            "type": "gif",
            "id": f"g{n}",
            "slug": f"cat-g{n}",
            "url": f"https://giphy.example/gifs/cat-g{n}",
            "title": f"Cat {n} GIF",
            "rating": "g",
            "images": {
                "original": _rendition(f"{media}/giphy.gif", 480, 270, 1_000_000 + n, strings=True),
                "downsized": _rendition(f"{media}/giphy-downsized.gif", 480, 270, 900_000 + n, strings=True),
                "fixed_width": _rendition(f"{media}/200w.gif", 200, 113, 200_000 + n, strings=True),
                "fixed_height": _rendition(f"{media}/200.gif", 356, 200, 300_000 + n, strings=True),
                "fixed_width_still": _rendition(f"{media}/200w_s.gif", 200, 113, 9_000, strings=True),
                "original_mp4": {"mp4": f"{media}/giphy.mp4", "width": "480", "height": "270"},
            },
            "analytics_response_payload": "e=Z2lm",
        }

    async def _gifs(self, request: web.Request) -> web.StreamResponse:
        failed = await self._misbehave(request)
        if failed is not None:
            return failed
        query = request.query
        if query.get("api_key") != GIPHY_KEY:
            return web.json_response({"meta": {"status": 401, "msg": "Unauthorized", "response_id": ""}}, status=401)
        if request.match_info["kind"] == "search" and len(query.get("q", "")) > 50:
            return web.json_response({"meta": {"status": 414, "msg": "URI Too Long", "response_id": ""}}, status=414)
        if self.mode == "synthetic":
            return web.json_response({"data": [], "meta": {"status": 200, "msg": "OK", "response_id": ""}})
        limit, offset = int(query.get("limit", "25")), int(query.get("offset", "0"))
        data = [self.gif(n) for n in range(offset, min(offset + limit, self.total))]
        return web.json_response(
            {
                "data": data,
                "pagination": {"total_count": self.total, "count": len(data), "offset": offset},
                "meta": {"status": 200, "msg": "OK", "response_id": "5f1e2d3c4b5a"},
            }
        )


class KlipyStandIn(StandIn):
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/{key}/gifs/{kind:search|trending}", self._gifs)
        return app

    @staticmethod
    def gif(n: int) -> dict[str, Any]:
        media = f"https://static.klipy.example/ii/{n}"

        def formats(size: str, width: int, height: int, bytes_: int) -> dict[str, Any]:
            return {
                ext: _rendition(f"{media}/{size}.{ext}", width, height, bytes_, strings=False)
                for ext in ("gif", "webp", "mp4", "jpg")
            }

        return {
            "id": 1000 + n,
            "slug": f"cat-{n}",
            "title": f"Cat {n}",
            "type": "gif",
            "tags": ["cat"],
            "blur_preview": "data:image/jpeg;base64,AAAA",
            "file": {
                "hd": formats("hd", 498, 280, 2_000_000),
                "md": formats("md", 320, 180, 700_000),
                "sm": formats("sm", 220, 124, 250_000),
                "xs": formats("xs", 90, 51, 40_000),
            },
        }

    async def _gifs(self, request: web.Request) -> web.StreamResponse:
        failed = await self._misbehave(request)
        if failed is not None:
            return failed
        query = request.query
        if request.match_info["key"] != KLIPY_KEY:
            return web.json_response({"result": False, "message": "invalid app key"}, status=401)
        per_page, page = int(query.get("per_page", "24")), int(query.get("page", "1"))
        if not 8 <= per_page <= 50:
            return web.json_response({"result": False, "errors": {"per_page": ["between 8 and 50"]}}, status=422)
        if self.mode == "no_result":
            return web.json_response({"result": False, "data": {}})
        first = (page - 1) * per_page
        items: list[dict[str, Any]] = [self.gif(n) for n in range(first, min(first + per_page, self.total))]
        if page == 1 and len(items) > 2:
            items.insert(2, {"type": "ad", "content": "<div>an ad</div>", "width": 300, "height": 250})
        return web.Response(
            body=orjson.dumps(
                {
                    "result": True,
                    "data": {
                        "data": items,
                        "current_page": page,
                        "per_page": per_page,
                        "has_next": first + per_page < self.total,
                    },
                }
            ),
            content_type="application/json",
        )
