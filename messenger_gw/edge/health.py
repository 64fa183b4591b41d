"""Probes: ``/healthz`` (the process is alive) and ``/readyz`` (it can serve traffic).

Readiness asks the store for a PING and OpenIM for its server time with the
cached admin token. It never fetches an admin token: a probe that minted one
would rotate the admin token every few seconds (contract, section 11). Until
the refresher holds a token, the gateway is not ready.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from messenger_gw.openim import ADMIN_TOKENS, OPENIM, AdminTokenManager, OpenIMClient, OpenIMError
from messenger_gw.operation_id import OPERATION_ID
from messenger_gw.store import STORE, Store, StoreError

PROBE_TIMEOUT = 2.0

DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)


async def healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def check_store(store: Store) -> str:
    try:
        await asyncio.wait_for(store.ping(), PROBE_TIMEOUT)
    except (TimeoutError, StoreError) as exc:
        return f"unreachable: {exc or 'timed out'}"
    return "ok"


async def check_openim(client: OpenIMClient, admin_tokens: AdminTokenManager, operation_id: str) -> str:
    token = admin_tokens.current()
    if token is None:
        return "no admin token yet (the refresher is fetching or failing; see messenger_gw_admin_token_refreshes_total)"
    try:
        await asyncio.wait_for(client.get_server_time(token, operation_id=operation_id), PROBE_TIMEOUT)
    except TimeoutError:
        return "timed out"
    except OpenIMError as exc:
        return f"failing: {exc}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    if app[DRAINING].is_set():
        return _json(503, {"status": "draining"})
    store_check, openim_check = await asyncio.gather(
        check_store(app[STORE]), check_openim(app[OPENIM], app[ADMIN_TOKENS], request[OPERATION_ID])
    )
    checks = {"store": store_check, "openim": openim_check}
    ready = all(result == "ok" for result in checks.values())
    return _json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
