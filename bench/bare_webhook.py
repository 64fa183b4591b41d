"""The webhook benchmark's baseline: a bare aiohttp handler that does one ``XADD`` per request, then answers.

What any receiver that keeps each after-callback durably before its 200 must do at least: read
the body, append it to a Redis stream, answer OpenIM's allow JSON. No secret, parsing or model.
uvloop, access log off, one redis-py client per process (hiredis), as the gateway has.
Usage: python bare_webhook.py HOST PORT REDIS_URL STREAM
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator

import redis.asyncio as redis
import uvloop
from aiohttp import web

ALLOW = b'{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}'
STORE: web.AppKey[redis.Redis] = web.AppKey("store", redis.Redis)


def make_app(redis_url: str, stream: str) -> web.Application:
    app = web.Application()

    async def store(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = redis.Redis.from_url(redis_url)
        yield
        await app[STORE].aclose()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        fields = {
            "command": request.match_info["command"],
            "body": body,
            "operationID": request.headers.get("operationID", ""),
            "receivedAt": str(int(time.time() * 1000)),
        }
        await request.app[STORE].xadd(stream, fields, maxlen=1_000_000, approximate=True)  # type: ignore[arg-type]
        return web.Response(body=ALLOW, content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(store)
    app.router.add_post("/webhooks/openim/{secret}/{command}", receive)
    app.router.add_get("/ready", ready)
    return app


if __name__ == "__main__":
    host, port, redis_url, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    uvloop.install()
    web.run_app(make_app(redis_url, stream), host=host, port=port, access_log=None, reuse_port=True, print=None)
