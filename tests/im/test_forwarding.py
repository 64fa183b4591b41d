"""The /im forward against an OpenIM that misbehaves on the wire, and against a client that reads slowly."""

from __future__ import annotations

import asyncio
import socket
import time
import zlib

import aiohttp
import httptools
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.metrics import METRICS
from messenger_gw.openim import OPENIM
from messenger_gw.openim._transport.pool import MAX_ANSWER_BYTES, MAX_FIELD_SIZE, MAX_HEADERS, PoolState
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, LOOPBACK, Recorder, StartGateway, base_url, sample
from tests.im.test_proxy import im

ROUTE = "/msg/get_server_time"
ENVELOPE = b'{"errCode":0}'


class StandIn:
    """OpenIM on the wire: each request is passed to the sandbox and its answer written back, except that
    the first call to ``ROUTE`` gets the bytes of ``answer`` as they are."""

    def __init__(self, sandbox: str, answer: bytes) -> None:
        self.sandbox = sandbox
        self.answer = answer
        self.url = ""
        self.dropped = asyncio.Event()  # the gateway closed the connection the answer went out on
        self._server: asyncio.Server | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StandIn:
        self._http = aiohttp.ClientSession()
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.url = f"http://{LOOPBACK}:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        assert self._http is not None
        self._server.close()
        await self._server.wait_closed()
        await self._http.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._http is not None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                headers = dict(line.split(": ", 1) for line in lines[1:] if line)
                body = await reader.readexactly(int(headers["Content-Length"]))
                if path == ROUTE and self.answer:
                    answer, self.answer = self.answer, b""
                    writer.write(answer)
                    try:
                        await reader.read()  # until the gateway drops the connection
                    finally:
                        self.dropped.set()
                    return
                passed = {k: v for k, v in headers.items() if k.lower() in ("token", "operationid", "content-type")}
                async with self._http.post(self.sandbox + path, data=body, headers=passed) as response:
                    content = await response.read()
                    writer.write(
                        b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                        % (response.status, len(content))
                        + content
                    )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def logged_in(client: GatewayClient) -> GatewayClient:
    await client.handshake(platform_id=5)
    await client.login({"userID": "alice", "code": GOOD_CODE})
    return client


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "upgrade"),
        (b"HTTP/2.0 200 OK\r\nContent-Length: 13\r\n\r\n" + ENVELOPE, "http_version"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * MAX_FIELD_SIZE + b"\r\n\r\n", "header_too_large"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", "too_many_headers"),
    ],
    ids=["101", "http-2.0", "large-header", "many-headers"],
)
async def test_an_answer_the_pool_refuses_is_502_and_its_connection_is_dropped(
    start_gateway: StartGateway, sandbox_server: TestServer, answer: bytes, kind: str
) -> None:
    async with StandIn(base_url(sandbox_server), answer) as openim:
        gateway = await start_gateway(PHASE="4", OPENIM_API_URL=openim.url)
        pool = gateway.app[OPENIM].pool
        async with gateway.client() as client:
            await logged_in(client)
            status, body, _ = await im(client, "/im" + ROUTE)
            assert (status, body["errCode"]) == (502, 50200)
            assert set(body) == {"errCode", "errMsg", "errDlt"}
            async with asyncio.timeout(2):
                await openim.dropped.wait()
            state = pool.state()
            assert state == PoolState(open=state.idle, idle=state.idle, waiting=0), "nothing held, nothing leaked"
            status, body, _ = await im(client, "/im" + ROUTE)  # the next call goes through
            assert (status, body["errCode"]) == (200, 0)
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_openim_errors_total", route=ROUTE, kind=kind) == 1


class SlowReader:
    """A raw socket with a small receive buffer that reads an answer ``chunk`` bytes at a time, ``pause``
    seconds apart for the first ``slow_for`` seconds (or stops reading after ``stop_after`` bytes), and
    notes what it got."""

    def __init__(self, *, chunk: int, pause: float = 0, slow_for: float = 0, stop_after: int | None = None) -> None:
        self.chunk = chunk
        self.pause = pause
        self.slow_for = slow_for
        self.stop_after = stop_after
        self.status = 0
        self.body = bytearray()
        self.received = 0
        self.complete = False
        self.malformed = False  # what came is not one HTTP answer: a second status line in its body, say
        self.stopped = asyncio.Event()  # it read stop_after bytes and reads no more

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True

    async def post(self, client: GatewayClient, path: str, body: bytes) -> None:
        """Send a signed request and read its answer until it is complete or the gateway closes the connection."""
        loop = asyncio.get_running_loop()
        host, _, port = client.base_url.removeprefix("http://").partition(":")
        headers = client.signed_headers("POST", path, body) | {
            "Host": f"{host}:{port}",
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            "Content-Length": str(len(body)),
        }
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        parser = httptools.HttpResponseParser(self)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: it sets the window
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, int(port)))
            await loop.sock_sendall(sock, head.encode() + body)
            slow_until = loop.time() + self.slow_for
            while not self.complete:
                if self.stop_after is not None and self.received >= self.stop_after:
                    self.stopped.set()
                    await asyncio.Event().wait()  # until cancelled
                try:
                    data = await loop.sock_recv(sock, self.chunk)
                except ConnectionResetError:
                    return
                if not data:
                    return
                self.received += len(data)
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError:
                    self.malformed = True
                    return
                self.status = parser.get_status_code()
                if loop.time() < slow_until:
                    await asyncio.sleep(self.pause)


def large_envelope(size: int) -> bytes:
    return orjson.dumps({"errCode": 0, "errMsg": "", "errDlt": "", "data": {"serverTime": 1, "pad": "x" * size}})


TIGHT_DEADLINES = {
    "PHASE": "4",
    "OPENIM_CONNECT_TIMEOUT": "0.2",
    "OPENIM_POOL_TIMEOUT": "0.2",
    "OPENIM_READ_TIMEOUT": "0.3",
    "OPENIM_TOTAL_TIMEOUT": "1",
}


async def test_a_slow_client_gets_the_whole_of_a_large_answer_and_openim_is_not_blamed(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(**TIGHT_DEADLINES)
    answer = large_envelope(8 << 20)  # far more than the socket buffers and the pool's buffer hold

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    # Slow for longer than OpenIM's total deadline, while the gateway still has most of the answer to write.
    reader = SlowReader(chunk=16384, pause=0.005, slow_for=1.5)
    async with gateway.client() as client:
        await logged_in(client)
        recorder.overrides[ROUTE] = large
        await reader.post(client, "/im" + ROUTE, b"{}")
    assert (reader.status, reader.complete, reader.malformed) == (200, True, False)
    assert bytes(reader.body) == answer
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_openim_errors_total", route=ROUTE, kind="timeout") == 0


async def test_a_client_that_stops_reading_is_cut_off_after_its_write_timeout_and_frees_the_connection(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(**TIGHT_DEADLINES, CLIENT_WRITE_TIMEOUT="0.5")
    answer = large_envelope(8 << 20)

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    reader = SlowReader(chunk=65536, stop_after=256 * 1024)
    pool = gateway.app[OPENIM].pool
    async with gateway.client() as client:
        await logged_in(client)
        recorder.overrides[ROUTE] = large
        reading = asyncio.create_task(reader.post(client, "/im" + ROUTE, b"{}"))
        try:
            async with asyncio.timeout(5):
                await reader.stopped.wait()
                started = time.monotonic()
                while (state := pool.state()).open != state.idle:  # noqa: ASYNC110 - the pool, watched from outside
                    await asyncio.sleep(0.01)
            took = time.monotonic() - started
        finally:
            reading.cancel()
        status, body, _ = await im(client, "/im/user/get_users_info", {"userIDs": ["alice"]})
        assert (status, body["errCode"]) == (200, 0)
    assert 0.4 <= took < 2, "cut off after its write timeout, not before"
    assert (reader.status, reader.complete) == (200, False)
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_openim_errors_total", route=ROUTE, kind="timeout") == 0


async def test_openim_failing_midway_through_a_streamed_answer_cuts_the_client_off_without_a_second_answer(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(**TIGHT_DEADLINES)
    release = asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        await response.write(large_envelope(1 << 20)[:-2])  # over the peek, so streamed; then nothing
        await release.wait()
        return response

    reader = SlowReader(chunk=65536)
    async with gateway.client() as client:
        await logged_in(client)
        recorder.overrides[ROUTE] = stalls
        try:
            async with asyncio.timeout(5):
                await reader.post(client, "/im" + ROUTE, b"{}")
        finally:
            release.set()
    assert (reader.status, reader.complete, reader.malformed) == (200, False, False)
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_openim_errors_total", route=ROUTE, kind="timeout") == 1


async def test_a_gzip_answer_expanding_beyond_the_bound_while_streamed_cuts_the_client_off(
    start_gateway: StartGateway, sandbox_server: TestServer
) -> None:
    packer = zlib.compressobj(9, wbits=31)
    block = b" " * (1 << 20)  # JSON whitespace after the envelope's start: over the peek, so streamed
    bomb = packer.compress(b'{"errCode":0,"errMsg":"","errDlt":"","data":{') + b"".join(
        packer.compress(block) for _ in range(MAX_ANSWER_BYTES // len(block) + 1)
    )
    bomb += packer.flush()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    reader = SlowReader(chunk=1 << 20)
    async with StandIn(base_url(sandbox_server), head + bomb) as openim:
        gateway = await start_gateway(PHASE="4", OPENIM_API_URL=openim.url)
        async with gateway.client() as client:
            await logged_in(client)
            async with asyncio.timeout(20):
                await reader.post(client, "/im" + ROUTE, b"{}")
                await openim.dropped.wait()
    assert (reader.status, reader.complete, reader.malformed) == (200, False, False)
    assert MAX_ANSWER_BYTES - (1 << 20) < len(reader.body) <= MAX_ANSWER_BYTES
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_openim_errors_total", route=ROUTE, kind="answer_too_large") == 1
