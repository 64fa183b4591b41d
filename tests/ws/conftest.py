"""Fixtures for the WebSocket guard: gateways relaying to the sandbox's msg-gateway, users logged in through them, raw
sockets speaking as the SDK does, and a record of every request frame the sandbox ("OpenIM") received."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from messenger_gw.protocol import sdkws_pb2
from messenger_gw.sandbox import FakeClock, Sandbox
from messenger_gw.sandbox import gateway as sandbox_gateway
from tests.conftest import GOOD_CODE, Gateway, StartGateway
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures

ADMIN_KEY = "ws-admin-key-0123456789"
ADMIN_KEYS = f"ops:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs exp by its clock and the gateway checks it by the real one: let them agree.
    return FakeClock(time.time())


StartGuarded = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start_guarded(start_gateway: StartGateway, ws_url: str) -> StartGuarded:  # noqa: F811 - the imported fixture
    """Start a gateway whose /ws relays to the sandbox's msg-gateway (more settings as keywords)."""

    async def start(**overrides: str) -> Gateway:
        return await start_gateway(**({"OPENIM_WS_URL_INTERNAL": ws_url, "ADMIN_API_KEYS": ADMIN_KEYS} | overrides))

    return start


@pytest.fixture
async def guarded(start_guarded: StartGuarded) -> Gateway:
    return await start_guarded()


def ws_address(gateway: Gateway) -> str:
    """The gateway's own /ws (logins hand out the public one, OPENIM_WS_URL)."""
    return "ws" + gateway.url.removeprefix("http") + "/ws"


@dataclasses.dataclass(frozen=True)
class Login:
    user_id: str
    token: str
    platform_id: int

    def query(self, **extra: str) -> dict[str, str]:
        """The SDK's query (openim-sdk-protocol.md 2.1), in its order."""
        return {
            "sendID": self.user_id,
            "token": self.token,
            "platformID": str(self.platform_id),
            "operationID": "op-login",
            "isBackground": "false",
            "isMsgResp": "true",
            "sdkType": "js",
        } | extra


async def log_in(gateway: Gateway, user_id: str, platform_id: int = 5) -> Login:
    """Log in through the gateway as a client does (signed), keeping the imToken it hands out."""
    async with gateway.client() as client:
        await client.handshake(platform_id=platform_id)
        reply = await client.login({"userID": user_id, "code": GOOD_CODE})
    return Login(user_id, reply["imToken"], platform_id)


class Socket:
    """One raw WebSocket speaking as the SDK does: binary JSON requests, text pings."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user_id: str, *, compressed: bool = False) -> None:
        self.ws = ws
        self.user_id = user_id
        self.compressed = compressed
        self.pushes: list[dict[str, Any]] = []
        self._n = 0

    async def send(
        self, ident: int, data: bytes = b"", *, send_id: str | None = None, op: str = "op-1", **envelope: Any
    ) -> str:
        self._n += 1
        incr = f"incr-{self._n}"
        frame = {
            "reqIdentifier": ident,
            "msgIncr": incr,
            "sendID": self.user_id if send_id is None else send_id,
            "operationID": op,
            "data": base64.b64encode(data).decode(),
        } | envelope
        raw = orjson.dumps(frame)
        await self.ws.send_bytes(gzip.compress(raw) if self.compressed else raw)
        return incr

    async def request(self, ident: int, data: bytes = b"", **kwargs: Any) -> dict[str, Any]:
        """Send a request and return its answer (pushes that arrive meanwhile are kept)."""
        incr = await self.send(ident, data, **kwargs)
        return await self.answer(incr)

    async def answer(self, incr: str) -> dict[str, Any]:
        while True:
            reply = await self.receive()
            if reply["msgIncr"] == incr:
                return reply
            self.pushes.append(reply)

    async def receive(self, within: float = 5) -> dict[str, Any]:
        message = await self.ws.receive(timeout=within)
        assert message.type == WSMsgType.BINARY, message
        raw = gzip.decompress(message.data) if self.compressed else message.data
        value: dict[str, Any] = orjson.loads(raw)
        return value

    async def push(self) -> dict[str, Any]:
        return self.pushes.pop(0) if self.pushes else await self.receive()

    async def closed(self, within: float = 5) -> aiohttp.WSMessage:
        """The next message that ends the socket (skipping data frames still arriving)."""
        while True:
            message = await self.ws.receive(timeout=within)
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                return message


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


Connect = Callable[..., Awaitable[Socket]]


@pytest.fixture
def connect(http: aiohttp.ClientSession) -> Connect:
    """``connect(url, login, **query)``: a socket past OpenIM's handshake answer, which it checks."""

    async def open_socket(url: str, login: Login, **extra: str) -> Socket:
        ws = await http.ws_connect(url, params=login.query(**extra))
        hello = await ws.receive(timeout=5)
        assert hello.type == WSMsgType.TEXT, hello
        assert orjson.loads(hello.data) == {"errCode": 0, "errMsg": "", "errDlt": ""}
        return Socket(ws, login.user_id, compressed=extra.get("compression") == "gzip")

    return open_socket


@dataclasses.dataclass
class Received:
    """What reached the sandbox's msg-gateway: each request frame as it read it, by user."""

    frames: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)
    upgrades: int = 0  # upgrade requests that reached it

    def of(self, user_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for user, raw in self.frames if user == user_id]

    def identifiers(self, user_id: str) -> list[int]:
        return [frame["reqIdentifier"] for frame in self.of(user_id)]


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Received:
    record = Received()
    original = sandbox_gateway._binary

    async def recording(sb: Sandbox, conn: Any, caller: Any, raw: bytes) -> bool:
        record.frames.append((conn.user_id, gzip.decompress(raw) if conn.compress else raw))
        return await original(sb, conn, caller, raw)

    monkeypatch.setattr(sandbox_gateway, "_binary", recording)
    checked = sandbox_gateway._essential_args_error

    def counting(query: Any) -> Any:  # the msg-gateway runs it on every upgrade request it reads
        record.upgrades += 1
        return checked(query)

    monkeypatch.setattr(sandbox_gateway, "_essential_args_error", counting)
    return record


def text_message(send_id: str, recv_id: str, text: str, *, platform: int = 5, **fields: Any) -> bytes:
    """A MsgData as the SDK's sendMessage builds it (openim-sdk-protocol.md 2.6)."""
    msg = sdkws_pb2.MsgData(
        sendID=send_id,
        recvID=recv_id,
        clientMsgID=f"c-{text}",
        senderPlatformID=platform,
        senderNickname=send_id.title(),
        sessionType=1,
        msgFrom=100,
        contentType=101,
        content=orjson.dumps({"content": text}),
        createTime=1,
        status=1,
    )
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg.SerializeToString()


def data_of(reply: dict[str, Any]) -> bytes:
    assert reply["errCode"] == 0, reply
    return base64.b64decode(reply["data"])
