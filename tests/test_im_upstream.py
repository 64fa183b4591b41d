"""The /im forward against an OpenIM that misbehaves on the wire, and against a client that reads slowly."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from messenger_gw.client import GatewayClient
from messenger_gw.metrics import METRICS
from messenger_gw.openim import OPENIM
from messenger_gw.upstream import MAX_FIELD_SIZE, MAX_HEADERS, PoolState

from .conftest import GOOD_CODE, LOOPBACK, StartGateway, base_url, sample
from .test_im_proxy import im

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
                    await reader.read()  # until the gateway drops the connection
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
