"""JSON request bodies: read, parse, and refuse what is not a JSON object."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from messenger_gw.errors import InvalidJSON


async def read_json_object(request: web.Request, *, empty_as_object: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` for an empty one if ``empty_as_object``), or :class:`InvalidJSON`."""
    raw = await request.read()
    if empty_as_object and is_blank(raw):
        return {}
    return parse_json_object(raw)


def is_blank(raw: bytes) -> bool:
    """No body, or only whitespace: what a route that takes no fields may be sent."""
    return not raw or raw.isspace()


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJSON("The body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidJSON("The body must be a JSON object")
    return body
