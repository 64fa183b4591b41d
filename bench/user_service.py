"""The benchmark's user-service: accepts any credentials for their userID (the contract in docs/user-service.md)."""

from __future__ import annotations

import sys

from aiohttp import web


async def verify(request: web.Request) -> web.Response:
    credentials = (await request.json())["credentials"]
    return web.json_response({"userID": credentials["userID"], "nickname": credentials["userID"]})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/identity/verify", verify)
    web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), access_log=None, print=None)
