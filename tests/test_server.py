"""Serving through aiohttp's runner: graceful shutdown drains in-flight requests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.health import DRAINING
from messenger_gw.metrics import FLUSH_INTERVAL
from messenger_gw.server import serving
from messenger_gw.settings import HostPort

from .conftest import LOOPBACK, RedisProcess, base_url, free_port, gateway_settings


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


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


@pytest.mark.slow
async def test_serve_with_workers_shares_the_port_and_stops_them_all(
    sandbox_server: TestServer, clean_redis: RedisProcess
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_GW_")} | {
        "MESSENGER_GW_LISTEN": f"{LOOPBACK}:{port}",
        "MESSENGER_GW_REDIS_URL": clean_redis.url,
        "MESSENGER_GW_OPENIM_API_URL": base_url(sandbox_server),
        "MESSENGER_GW_OPENIM_SECRET": "openIM123",
        "MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:10001",
        "MESSENGER_GW_USER_SERVICE_URL": "http://127.0.0.1:9",
        "MESSENGER_GW_USER_SERVICE_TOKEN": "user-service-token-value",
    }
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "messenger_gw", "serve", "--workers", "2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://{LOOPBACK}:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        children = children_of(parent.pid)
        assert len(children) == 2
        # Fresh connections spread over the workers; any worker's /metrics counts them all.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(40):
                async with http.get(f"http://{LOOPBACK}:{port}/healthz") as response:
                    assert response.status == 200
            # Each worker adds its tallies to the shared values every second (and at its own scrapes).
            await asyncio.sleep(FLUSH_INTERVAL + 0.5)
            for _ in range(4):
                async with http.get(f"http://{LOOPBACK}:{port}/metrics") as response:
                    text = await response.text()
                [line] = [
                    row
                    for row in text.splitlines()
                    if row.startswith("messenger_gw_http_requests_total{") and 'route="/healthz"' in row
                ]
                assert float(line.rsplit(" ", 1)[1]) == 40.0, line
        parent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await parent.wait() == 0
        assert not any(is_running(child) for child in children)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
