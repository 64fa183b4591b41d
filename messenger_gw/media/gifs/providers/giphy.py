"""GIPHY's API v1: ``/v1/gifs/search`` and ``/v1/gifs/trending``.

As GIPHY documents it (developers.giphy.com/docs/api/endpoint/search/, .../schema/image-object/,
.../schema/meta-object/, .../response-codes/, .../synthetic-response/): the key is the
``api_key`` query parameter; ``q`` is at most 50 characters (414 beyond); ``limit`` and
``offset`` page through results, the offset at most 4999 for search and 499 for trending;
``rating`` is g, pg, pg-13 or r. An answer is ``{"data": [GIF], "pagination": {"total_count",
"count", "offset"}, "meta": {"status", "msg", "response_id"}}``; a GIF's ``images`` maps rendition
names to ``{"url", "width", "height", "size", ...}``, the numbers written as strings. When its own
systems fail GIPHY answers a *synthetic response*: ``meta.status`` 200 with an empty
``response_id`` and nothing else, to be treated as an error.

Renditions used: ``original`` is the source picture, ``downsized`` (under 2 MB) the big picture,
``fixed_width`` (200 px wide) the snapshot a picker shows.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Gif, Kind, Page, Provider, ProviderError, Query, first, number, picture, title

MAX_OFFSET: dict[Kind, int] = {"search": 4999, "trending": 499}


class Giphy(Provider):
    name: ClassVar[str] = "giphy"
    min_limit: ClassVar[int] = 1
    max_limit: ClassVar[int] = 50  # what a GIPHY beta key takes

    def check_cursor(self, kind: Kind, pos: str) -> None:
        if not (pos.isdigit() and len(pos) <= 4 and int(pos) <= MAX_OFFSET[kind]):
            raise ValueError(f"a GIPHY cursor is an offset from 0 to {MAX_OFFSET[kind]}")

    async def fetch(self, query: Query) -> Page:
        offset = int(query.pos or 0)
        params = {
            "api_key": self._key.reveal(),
            "limit": str(query.limit),
            "offset": str(offset),
            "rating": self.rating,
        }
        if query.kind == "search":
            params["q"] = query.q
        answer = await self.get_json(f"/v1/gifs/{query.kind}", params)
        if not isinstance(answer, dict):
            raise ProviderError("GIPHY answered something that is not an object")
        meta = answer.get("meta")
        if not isinstance(meta, dict) or meta.get("status") != 200 or not meta.get("response_id"):
            status = meta.get("status") if isinstance(meta, dict) else None
            raise ProviderError(f"GIPHY answered a synthetic or failed response (meta.status {status!r})")
        data, pagination = answer.get("data"), answer.get("pagination")
        if not isinstance(data, list) or not isinstance(pagination, dict):
            raise ProviderError("GIPHY's answer lacks data or pagination")
        gifs = [gif for item in data if (gif := _gif(item)) is not None]
        count, total = number(pagination.get("count")), number(pagination.get("total_count"))
        after = offset + count
        more = count > 0 and after < total and after <= MAX_OFFSET[query.kind]
        return Page(gifs, str(after) if more else None)


def _gif(item: Any) -> Gif | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("images"), dict):
        return None
    gif_id, images = item["id"], item["images"]
    source = picture(images.get("original"), f"giphy-{gif_id}-source")
    big = first(picture(images.get("downsized"), f"giphy-{gif_id}-big"), source)
    snapshot = first(
        picture(images.get("fixed_width"), f"giphy-{gif_id}-snapshot"),
        picture(images.get("fixed_height"), f"giphy-{gif_id}-snapshot"),
        big,
    )
    if source is None or big is None or snapshot is None:
        return None
    return Gif(gif_id, title(item.get("title")), source, big, snapshot)
