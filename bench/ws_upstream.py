"""The WebSocket benchmark's upstream: OpenIM's msg-gateway as far as the load needs it, as fast as aiohttp goes.

On any path: the upgrade, the success text frame when ``isMsgResp`` (protocol document 2.2), ``{"type":"pong",
"body":null}`` for each text ping, and for each binary request an answer with its reqIdentifier, msgIncr and
operationID, errCode 0 and an empty message. No checks at all: what is measured is what stands in front of it.
Usage: python ws_upstream.py HOST PORT
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import WSMsgType, web

HELLO = '{"errCode":0,"errMsg":"","errDlt":""}'
PONG = '{"type":"pong","body":null}'


async def socket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=51_200)
    await ws.prepare(request)
    if request.query.get("isMsgResp") == "true":
        await ws.send_str(HELLO)
    async for message in ws:
        if message.type is WSMsgType.BINARY:
            req = orjson.loads(message.data)
            await ws.send_bytes(
                orjson.dumps(
                    {
                        "reqIdentifier": req["reqIdentifier"],
                        "msgIncr": req["msgIncr"],
                        "operationID": req["operationID"],
                        "errCode": 0,
                        "errMsg": "",
                        "data": "",
                    }
                )
            )
        elif message.type is WSMsgType.TEXT:
            await ws.send_str(PONG)
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/{tail:.*}", socket)
    uvloop.install()
    web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), access_log=None, reuse_port=True, print=None)
