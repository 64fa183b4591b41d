"""Serving through aiohttp's runner: graceful shutdown drains in-flight requests."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.edge import DRAINING
from messenger_gw.metrics import FLUSH_INTERVAL
from messenger_gw.server import serving
from messenger_gw.settings import HostPort
from tests.conftest import LOOPBACK, RedisProcess, base_url, free_port, gateway_settings


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


# -- malformed HTTP: refused by aiohttp's parser, before any middleware ------------------------------

MARK = b"SECRET-MARK"  # in the offending bytes of each case: it must come back nowhere
HEAD = b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\n"
MALFORMED = {
    "header field over 8 KiB": (HEAD + b"X-Big: " + MARK + b"a" * 9000 + b"\r\n\r\n", 431, 43100),
    "more than 128 header fields": (HEAD + b"".join(b"X-%d: %s\r\n" % (i, MARK) for i in range(200)) + b"\r\n",
                                    431, 43100),
    "request line over 8 KiB": (b"GET /" + MARK + b"a" * 9000 + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n", 431, 43100),
    "NUL in a header value": (HEAD + b"X-Evil: " + MARK + b"\x00tail\r\n\r\n", 400, 40000),
    "bare CR in a header value": (HEAD + b"X-Evil: " + MARK + b"\rtail\r\n\r\n", 400, 40000),
    "bare LF ending a header line": (HEAD + b"X-Evil: " + MARK + b"\nX-Next: 1\r\n\r\n", 400, 40000),
    "obs-fold": (HEAD + b"X-Evil: first\r\n  " + MARK + b"\r\n\r\n", 400, 40000),
    "a repeated Content-Length": (
        b"POST /healthz HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\nContent-Length: 3\r\nX-Mark: " + MARK
        + b"\r\n\r\nab",
        400,
        40000,
    ),
    "a bad request method": (b"G" + MARK + b"\x01T /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n", 400, 40000),
    "Transfer-Encoding with Content-Length": (
        b"POST /healthz HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 11\r\n"
        b"X-Mark: " + MARK + b"\r\n\r\n0\r\n\r\n",
        400,
        40000,
    ),
}  # fmt: skip


@pytest.fixture
async def served_gateway(sandbox_server: TestServer, clean_redis: RedisProcess) -> AsyncIterator[HostPort]:
    """The gateway as `serve` runs it: through `serving`, on a real listening socket."""
    app = create_app(gateway_settings(base_url(sandbox_server), redis_url=clean_redis.url))
    async with serving(app, HostPort(LOOPBACK, 0), shutdown_timeout=1) as bound:
        yield bound


async def exchange(at: HostPort, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(at.host, at.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()  # the gateway closes the connection after its answer
    finally:
        writer.close()


@pytest.mark.parametrize(("raw", "status", "code"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_http_gets_the_envelope_and_a_warning_that_quote_nothing(
    served_gateway: HostPort, caplog: pytest.LogCaptureFixture, raw: bytes, status: int, code: int
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = await exchange(served_gateway, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.split(" ", 2)[1] == str(status), answer[:300]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"]
    reply = orjson.loads(body)
    assert set(reply) == {"errCode", "errMsg", "errDlt"}
    assert reply["errCode"] == code
    assert MARK not in answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    records = [r for r in caplog.records if r.name.startswith("aiohttp") or r.name == "messenger_gw.edge.middleware"]
    assert [(r.name, r.levelno) for r in records] == [("messenger_gw.edge.middleware", logging.WARNING)]
    [record] = records
    assert record.exc_info is None
    assert MARK.decode() not in record.getMessage()
    assert not any(MARK.decode() in str(value) for value in vars(record).values())
    assert (record.errCode, record.operationID) == (code, headers["x-request-id"])  # type: ignore[attr-defined]


async def test_a_well_formed_request_on_the_same_server_is_answered_as_usual(served_gateway: HostPort) -> None:
    answer = await exchange(served_gateway, HEAD + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"status":"ok"}')


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
        "MESSENGER_GW_PUBLIC_IM_URL": f"http://{LOOPBACK}:{port}/im",
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
