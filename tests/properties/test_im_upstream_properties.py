"""Bytes from OpenIM through the whole /im chain, by property: the client gets OpenIM's answer or the gateway's
clean 502 envelope, never a 500 or a traceback, and the pool to OpenIM is left with no connection it lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import event, given
from hypothesis import strategies as st

from messenger_gw.app import create_app
from messenger_gw.openim import OPENIM
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, LOOPBACK, RedisProcess, base_url, gateway_settings
from tests.openim.transport.test_pool import RawServer
from tests.properties.test_upstream_properties import answers, damaged

ROUTE = "/msg/get_server_time"


class OpenIMFront:
    """OpenIM as the gateway sees it: ``ROUTE`` answered with the example's bytes, all else by the sandbox."""

    def __init__(self, sandbox_url: str, http: aiohttp.ClientSession) -> None:
        self.sandbox_url = sandbox_url
        self.http = http
        self.answer = b""
        self.close_after = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(next(v for k, v in headers.items() if k.lower() == "content-length"))
            body = await reader.readexactly(length)
            if target.partition("?")[0] == ROUTE:
                writer.write(self.answer)
                await writer.drain()
                if self.close_after:
                    return
                continue
            relayed = {k: v for k, v in headers.items() if k.lower() in ("token", "operationid", "content-type")}
            relayed["Accept-Encoding"] = "identity"  # written back as it comes, with no Content-Encoding
            async with self.http.post(self.sandbox_url + target, data=body, headers=relayed) as response:
                answer = await response.read()
            writer.write(b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n%s" % (response.status, len(answer), answer))
            await writer.drain()


@pytest.fixture
async def front(sandbox_server: TestServer) -> AsyncIterator[tuple[OpenIMFront, RawServer]]:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        openim = OpenIMFront(base_url(sandbox_server), http)
        server = RawServer(openim.handle)
        await server.start()
        yield openim, server
        await server.close()


@pytest.fixture
async def fronted(
    front: tuple[OpenIMFront, RawServer], clean_redis: RedisProcess, user_service_url: str
) -> AsyncIterator[tuple[OpenIMFront, TestServer, GatewayClient]]:
    openim, raw = front
    settings = gateway_settings(raw.url, redis_url=clean_redis.url, USER_SERVICE_URL=user_service_url, PHASE="4")
    server = TestServer(create_app(settings), host=LOOPBACK)
    await server.start_server()
    async with GatewayClient(base_url(server)) as alice:
        await alice.handshake(platform_id=5)
        await alice.login({"userID": "alice", "code": GOOD_CODE})
        yield openim, server, alice
    await server.close()


@given(answer=answers(), data=st.data())
async def test_any_answer_of_openim_reaches_the_client_whole_or_as_a_clean_502(
    fronted: tuple[OpenIMFront, TestServer, GatewayClient],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    answer: tuple[bytes, int, bytes, bool],
    data: st.DataObject,
) -> None:
    openim, server, alice = fronted
    raw, status, body, ends_connection = answer
    intact = data.draw(st.sampled_from([True, False]), label="intact")
    openim.answer = raw if intact else data.draw(damaged(raw), label="damaged")
    openim.close_after = ends_connection or not intact
    caplog.clear()
    headers = alice.signed_headers("POST", "/im" + ROUTE, b"{}") | {"Accept-Encoding": "identity"}
    try:
        async with http.post(alice.base_url + "/im" + ROUTE, data=b"{}", headers=headers) as response:
            got: tuple[int, bytes] | None = (response.status, await response.read())
    except aiohttp.ClientPayloadError:
        got = None  # cut off while streamed: the status was sent, the client learns it from the broken body
    event(f"{'intact' if intact else 'damaged'}: {got[0] if got else 'cut off'}")
    if intact and status == 200:
        assert got == (200, body), got
    elif got is None:
        assert not intact or len(body) > 64 * 1024, "only a streamed answer can be cut off"
    else:
        code, reply = got
        assert code in (200, 400, 502), got
        if code == 502:
            envelope = orjson.loads(reply)
            assert set(envelope) == {"errCode", "errMsg", "errDlt"}, envelope
            assert envelope["errCode"] == 50200, envelope
    await asyncio.sleep(0)
    state = server.app[OPENIM].pool.state()
    assert (state.open, state.waiting) == (state.idle, 0), state
    # The gateway logs its own 502 (errors.py); what must not appear is a failure nobody handled.
    unhandled = [r for r in caplog.records if r.exc_info or r.name.startswith(("asyncio", "aiohttp"))]
    assert not [r for r in unhandled if r.levelno >= logging.ERROR], [r.getMessage() for r in unhandled]
