"""KLIPY's native API v1: ``/api/v1/{app_key}/gifs/search`` and ``.../gifs/trending``.

The key is a path segment. A request pages with ``page`` (from 1) and ``per_page`` (8 to 50),
names the end user with ``customer_id`` and filters content with ``content_filter`` (off, low,
medium, high). An answer is ``{"result": true, "data": {"data": [item], "current_page",
"per_page", "has_next"}}``; an item is ``{"id", "slug", "title", "type", "file": {"hd", "md",
"sm", "xs": {"gif", "webp", "jpg", "mp4", "webm": {"url", "width", "height", "size"}}}}``, and
items of ``"type": "ad"`` are advertisements, which the gateway drops. (docs.klipy.com describes
it; the shape here is the one KLIPY's public integrations read, see docs/media.md.)

Every user is sent as the same ``customer_id``: answers are shared by every user through the
cache, so there is nothing personal to say.

Renditions used: ``hd`` is the source picture, ``md`` the big picture, ``sm`` the snapshot.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from .base import Gif, Kind, Page, Provider, ProviderError, Query, first, picture, title

CUSTOMER_ID = "messenger-gw"
MAX_PAGE = 1000
# The gateway's rating in KLIPY's terms: the filter that lets nothing above it through.
CONTENT_FILTER = {"g": "high", "pg": "medium", "pg-13": "low", "r": "off"}


class Klipy(Provider):
    name: ClassVar[str] = "klipy"
    min_limit: ClassVar[int] = 8
    max_limit: ClassVar[int] = 50

    def check_cursor(self, kind: Kind, pos: str) -> None:
        if not (pos.isdigit() and len(pos) <= 4 and 1 <= int(pos) <= MAX_PAGE):
            raise ValueError(f"a KLIPY cursor is a page from 1 to {MAX_PAGE}")

    async def fetch(self, query: Query) -> Page:
        page = int(query.pos or 1)
        params = {
            "page": str(page),
            "per_page": str(query.limit),
            "customer_id": CUSTOMER_ID,
            "content_filter": CONTENT_FILTER[self.rating],
        }
        if query.kind == "search":
            params["q"] = query.q
        key = quote(self._key.reveal(), safe="")
        answer = await self.get_json(f"/api/v1/{key}/gifs/{query.kind}", params)
        if not isinstance(answer, dict) or answer.get("result") is not True:
            raise ProviderError("KLIPY answered without result: true")
        data = answer.get("data")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(items, list):
            raise ProviderError("KLIPY's answer lacks data.data")
        gifs = [gif for item in items if (gif := _gif(item)) is not None]
        more = data.get("has_next") is True and page < MAX_PAGE
        return Page(gifs, str(page + 1) if more else None)


def _gif(item: Any) -> Gif | None:
    if not isinstance(item, dict) or item.get("type", "gif") != "gif":
        return None  # an advertisement, or something else than a GIF
    gif_id, files = item.get("id"), item.get("file")
    if not isinstance(gif_id, int | str) or isinstance(gif_id, bool) or not isinstance(files, dict):
        return None
    gif_id = str(gif_id)

    def rendition(size: str, role: str) -> Any:
        formats = files.get(size)
        return picture(formats.get("gif") if isinstance(formats, dict) else None, f"klipy-{gif_id}-{role}")

    source = first(rendition("hd", "source"), rendition("md", "source"))
    big = first(rendition("md", "big"), source)
    snapshot = first(rendition("sm", "snapshot"), rendition("xs", "snapshot"), big)
    if source is None or big is None or snapshot is None:
        return None
    return Gif(gif_id, title(item.get("title")), source, big, snapshot)
