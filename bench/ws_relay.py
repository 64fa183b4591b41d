"""The WebSocket benchmark's baseline (f): a bare aiohttp WebSocket relay, no authentication, no checks.

Each client socket gets one to the upstream with the same query, through aiohttp's client; every frame is relayed
unchanged both ways (the client side as the guard's: aiohttp's server, no permessage-deflate, pings answered on
each side, one task per direction; a connector without a limit). The least any aiohttp WebSocket relay does.
Usage: python ws_relay.py HOST PORT UPSTREAM_WS_URL
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import aiohttp
import uvloop
from aiohttp import WSMsgType, web


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))

    async def close(_: web.Application) -> None:
        await session.close()

    async def down(up: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse) -> None:
        async for message in up:
            if message.type is WSMsgType.BINARY:
                await client.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                await client.send_str(message.data)
        await client.close()

    async def relay(request: web.Request) -> web.StreamResponse:
        up = await session.ws_connect(
            upstream, params=request.query, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)
        )
        client = web.WebSocketResponse(compress=False, max_msg_size=204_800, timeout=2.0)
        await client.prepare(request)
        task = asyncio.create_task(down(up, client))
        try:
            async for message in client:
                if message.type is WSMsgType.BINARY:
                    await up.send_bytes(message.data)
                elif message.type is WSMsgType.TEXT:
                    await up.send_str(message.data)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await up.close()
        return client

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.on_cleanup.append(close)
    app.router.add_get("/ready", ready)
    app.router.add_get("/ws", relay)
    return app


if __name__ == "__main__":
    host, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvloop.install()
    web.run_app(make_app(upstream), host=host, port=port, access_log=None, reuse_port=True, print=None)
