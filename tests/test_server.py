"""Serving through aiohttp's runner: graceful shutdown drains in-flight requests."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.health import DRAINING
from messenger_gw.server import serving
from messenger_gw.settings import HostPort

from .conftest import LOOPBACK, RedisProcess, base_url, gateway_settings


async def test_shutdown_finishes_in_flight_requests_and_refuses_new_ones(
    sandbox_server: TestServer, clean_redis: RedisProcess
) -> None:
    app = create_app(gateway_settings(base_url(sandbox_server), redis_url=clean_redis.url))
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="done")

    app.router.add_get("/slow", slow)
    server = serving(app, HostPort(LOOPBACK, 0), shutdown_timeout=10)
    bound = await server.__aenter__()

    async def fetch(session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with session.get(bound.url + path) as response:
            return response.status, await response.text()

    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(fetch(session, "/slow"))
        await started.wait()
        stopping = asyncio.create_task(server.__aexit__(None, None, None))
        async with asyncio.timeout(5):
            await app[DRAINING].wait()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
            with pytest.raises(aiohttp.ClientConnectionError):
                await fetch(fresh, "/healthz")
        assert not in_flight.done()
        release.set()
        assert await in_flight == (200, "done")
        await stopping
