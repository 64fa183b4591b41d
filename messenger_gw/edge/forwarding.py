"""Passing a client's request on to a service behind the gateway, and its answer back: what the ``/im`` proxy
and the legacy chat service's proxy share (``docs/im-proxy.md``, ``docs/legacy-chat.md``).

* Request headers: hop-by-hop fields (``Connection`` and the fields it names, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) never pass, nor the client's credentials; each
  proxy names the fields it sets itself.
* A large answer is streamed at the client's pace: the service's deadlines count only the waits for it (in
  ``read``), each write to the client has ``write_timeout`` of its own, and an answer that cannot be completed cuts
  the client's connection, since after the status line no envelope can follow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import LooseHeaders

from .cors import add_cors_headers

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate",
     "proxy-authorization", "proxy-connection"}
)  # fmt: skip
# Whatever a client proves itself with, to the gateway or to OpenIM: the services behind get the caller as
# the gateway authenticated it, never the client's own credentials.
CLIENT_CREDENTIALS = frozenset(
    {"authorization", "cookie", "signature", "signature-input", "content-digest", "token", "operationid",
     "x-request-id", "x-platform-id"}
)  # fmt: skip
STREAM_PART_BYTES = 64 * 1024
PEEK_BYTES = 64 * 1024  # an answer up to this size is read whole and sent with its length; a larger one streamed
COMPRESS_FROM_BYTES = 1024


async def peek(read: Callable[[int], Awaitable[bytes]], at_eof: Callable[[], bool]) -> bytes:
    """The answer's first :data:`PEEK_BYTES` + 1 bytes at most: all of it when ``at_eof()`` then."""
    head = b""  # usually one read: then no copy at all
    while len(head) <= PEEK_BYTES and not at_eof():
        head += await read(PEEK_BYTES + 1 - len(head))
    return head


def whole_answer(
    status: int, body: bytes, *, headers: LooseHeaders | None = None, content_type: str | None = None
) -> web.Response:
    """An answer read whole, compressed (where the client takes it) from :data:`COMPRESS_FROM_BYTES` on."""
    response = web.Response(status=status, body=body, headers=headers, content_type=content_type)
    if len(body) >= COMPRESS_FROM_BYTES:
        response.enable_compression()
    return response


def passed_headers(request: web.Request, dropped: frozenset[str]) -> list[tuple[str, str]]:
    """The client's header fields that pass on, as name and value pairs: none in ``dropped`` (lower-case
    names, :data:`HOP_BY_HOP` among them), none that ``Connection`` names, no ``Proxy-*``."""
    if "Connection" in request.headers:  # and the fields it names, hop-by-hop too
        named = {name.strip().lower() for value in request.headers.getall("Connection") for name in value.split(",")}
        dropped = dropped | named
    # The pool writes these pairs as they are: no mapping is built only to be read once.
    return [
        (name, value)
        for name, value in request.headers.items()
        if (lower := name.lower()) not in dropped and not lower.startswith("proxy-")
    ]


async def stream_answer(
    request: web.Request,
    response: web.StreamResponse,
    head: bytes,
    read: Callable[[int], Awaitable[bytes]],
    *,
    write_timeout: float,
) -> web.StreamResponse:
    """Send ``head`` and then every part ``read`` gives (b"" at the end) to the client through ``response``
    (compressed where the client takes it, with the edge's CORS headers, which it cannot add once the status
    line is out), each write within ``write_timeout``; a client too slow or gone has its connection closed."""
    response.enable_compression()
    add_cors_headers(request, response)
    await response.prepare(request)
    chunk = head
    try:
        while chunk:
            async with asyncio.timeout(write_timeout):
                await response.write(chunk)
            chunk = await read(STREAM_PART_BYTES)
        async with asyncio.timeout(write_timeout):
            await response.write_eof()
    except (TimeoutError, ConnectionError) as exc:  # the writes': a service's deadline ends a read by cancelling it
        slow = isinstance(exc, TimeoutError)
        log.info("the client %s a streamed answer: cut off", "was too slow to take" if slow else "went away during")
        cut_off(request)
    except BaseException:
        cut_off(request)  # the service failed midway: its failure is counted, and the client must not take part for all
        raise
    return response


def cut_off(request: web.Request) -> None:
    """End the client's connection: after the status line, no envelope can follow, and an answer cut
    short must not look complete."""
    if request.transport is not None:
        request.transport.abort()
