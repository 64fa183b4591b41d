"""The benchmark's baseline (b): a bare aiohttp pass-through proxy, no auth, no policy.

One shared ClientSession, uvloop, access log off: the least any aiohttp proxy does.
Usage: python passthrough.py HOST PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

SKIP = {"host", "content-length", "connection", "transfer-encoding"}


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

    async def close(_: web.Application) -> None:
        await session.close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIP}
        async with session.request(request.method, upstream + request.path_qs, data=body, headers=headers) as response:
            payload = await response.read()
            return web.Response(status=response.status, body=payload, content_type=response.content_type)

    app.on_cleanup.append(close)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


if __name__ == "__main__":
    host, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvloop.install()
    web.run_app(make_app(upstream), host=host, port=port, access_log=None, reuse_port=True, print=None)
