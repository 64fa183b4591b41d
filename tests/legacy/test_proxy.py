"""/legacy end to end: gateway -> a stand-in of the old chat service written here -> back to the client."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from messenger_gw import keys
from messenger_gw.metrics import METRICS
from messenger_gw.moderation import Ban
from messenger_gw.sandbox import FakeClock
from tests.conftest import GOOD_CODE, LOOPBACK, Gateway, RedisProcess, StartGateway, base_url, free_port, sample

JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes!!"
TABLE = """
[[route]]
path = "/v1/conversations/{conversationID}/messages"
methods = ["GET"]
access = "read"
replaced_by = "/im/msg/pull_msg_by_seq"

[[route]]
path = "/v1/conversations/{conversationID}/messages"
methods = ["POST"]
access = "write"
replaced_by = "/im/msg/send_msg"

[[route]]
path = "/v1/groups/{groupID}"
methods = ["PUT", "DELETE"]
access = "write"
phases = [1, 2, 3]
replaced_by = "/im/group/dismiss_group"

[[route]]
path = "/v1/big"
methods = ["GET"]
access = "read"
"""
READ = ("GET", "/legacy/v1/conversations/c1/messages")
WRITE = ("POST", "/legacy/v1/conversations/c1/messages")
LATE_WRITE = ("PUT", "/legacy/v1/groups/g1")  # a write whose route says it stays open in phase 3


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class OldChat:
    """The old chat service: records what reaches it and answers like a REST service of its own."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.delay = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path.partition("?")[2],
                dict(request.headers),
                await request.read(),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.path == "/v1/big":
            return web.Response(body=b"x" * (300 * 1024), content_type="application/octet-stream")
        body = {"method": request.method, "path": request.path, "user": request.headers.get("X-Legacy-User")}
        return web.json_response(
            body,
            status=201 if request.method == "POST" else 200,
            headers={"ETag": '"v7"', "Set-Cookie": "old=1", "X-Internal": "node-3", "Cache-Control": "no-cache"},
        )


@pytest.fixture
def old_chat() -> OldChat:
    return OldChat()


@pytest.fixture
async def old_chat_url(old_chat: OldChat) -> AsyncIterator[str]:
    server = TestServer(old_chat.app(), host=LOOPBACK)
    await server.start_server()
    yield base_url(server)
    await server.close()


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "legacy-routes.toml"
    path.write_text(TABLE)
    return path


def legacy_env(url: str, table: Path, phase: int, **extra: str) -> dict[str, str]:
    return {
        "PHASE": str(phase),
        "LEGACY_CHAT_URL": url,
        "LEGACY_ROUTE_TABLE": str(table),
        "LEGACY_USER_HEADER": "X-Legacy-User",
        "LEGACY_PLATFORM_HEADER": "X-Legacy-Platform",
        "LEGACY_HEADERS": '{"X-Service-Key": "old-service-key"}',
        "JWT_HS256_SECRET": JWT_SECRET,
    } | extra


def bearer(user_id: str = "alice") -> dict[str, str]:
    token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}", "X-Platform-ID": "2"}


async def call(
    gateway: Gateway, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes, CIMultiDict[str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, gateway.url + path, data=body, headers=bearer() | (headers or {})) as response,
    ):
        return response.status, await response.read(), CIMultiDict(response.headers)


# -- the phase switch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "read", "write", "late_write"),
    [
        (1, 200, 201, 200),
        (2, 200, 201, 200),
        (3, 200, 410, 200),
        (4, 200, 410, 410),
        (5, 200, 410, 410),
        (6, 410, 410, 410),
    ],
)
async def test_each_phase_passes_or_retires_each_route(
    start_gateway: StartGateway,
    old_chat: OldChat,
    old_chat_url: str,
    table: Path,
    phase: int,
    read: int,
    write: int,
    late_write: int,
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, phase))
    statuses = [(await call(gateway, method, path))[0] for method, path in (READ, WRITE, LATE_WRITE)]
    assert statuses == [read, write, late_write]
    reached = [(seen.method, seen.path) for seen in old_chat.seen]
    calls = zip((READ, WRITE, LATE_WRITE), statuses, strict=True)
    expected = [(method, path.removeprefix("/legacy")) for (method, path), status in calls if status != 410]
    assert reached == expected, "a retired route never reaches the old service"
    metrics = gateway.app[METRICS]
    forwarded = sample(
        metrics, "messenger_gw_legacy_requests_total", route="/legacy/v1/conversations/{conversationID}/messages",
        verdict="forwarded",
    )  # fmt: skip
    assert forwarded == [read, write].count(200) + [read, write].count(201)


async def test_a_retired_write_is_410_with_the_envelope_and_the_im_route_that_replaces_it(
    start_gateway: StartGateway, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 3))
    status, raw, headers = await call(gateway, *WRITE, body=b'{"text": "hi"}')
    assert status == 410
    assert orjson.loads(raw) == {
        "errCode": 41000,
        "errMsg": "This route of the legacy chat service is retired: use /im/msg/send_msg",
        "errDlt": "/im/msg/send_msg",
    }
    assert headers["Link"] == '</im/msg/send_msg>; rel="successor-version"'
    route = "/legacy/v1/conversations/{conversationID}/messages"
    assert sample(gateway.app[METRICS], "messenger_gw_legacy_requests_total", route=route, verdict="gone") == 1


# -- identity and headers -----------------------------------------------------------------------------------


async def test_the_old_service_sees_the_caller_the_gateway_authenticated_and_never_the_clients_credentials(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 2))
    forged = {
        "X-Legacy-User": "mallory",
        "X-Legacy-Platform": "9",
        "X-Service-Key": "guessed",
        "Cookie": "session=old-session",
        "Connection": "X-Hop",
        "X-Hop": "1",
        "Proxy-Authorization": "Basic eA==",
        "X-Forwarded-For": "203.0.113.9",
        "X-App-Version": "7.1",
        "Content-Type": "application/json",
    }
    body = b'{"text": "hello", "clientMsgID": "m-1"}'
    status, raw, headers = await call(gateway, "POST", WRITE[1] + "?draft=1&x=%20y", headers=forged, body=body)
    assert status == 201
    assert orjson.loads(raw)["user"] == "alice"
    [seen] = old_chat.seen
    sent = {name.lower(): value for name, value in seen.headers.items()}
    assert sent["x-legacy-user"] == "alice"
    assert sent["x-legacy-platform"] == "2"
    assert sent["x-service-key"] == "old-service-key"
    for name in ("authorization", "cookie", "x-platform-id", "x-hop", "proxy-authorization"):
        assert name not in sent, name
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-request-id"] == headers["X-Request-ID"]
    assert sent["x-app-version"] == "7.1"
    assert sent["content-type"] == "application/json"
    assert (seen.method, seen.path, seen.query, seen.body) == ("POST", "/v1/conversations/c1/messages",
                                                               "draft=1&x=%20y", body)  # fmt: skip


async def test_a_signed_request_reaches_the_old_service_as_its_sessions_user(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 3))
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "bob", "code": GOOD_CODE})
        signed = client.signed_headers("GET", READ[1], b"")
        async with aiohttp.ClientSession() as http, http.get(gateway.url + READ[1], headers=signed) as response:
            assert response.status == 200
    [seen] = old_chat.seen
    assert (seen.headers["X-Legacy-User"], seen.headers["X-Legacy-Platform"]) == ("bob", "5")
    sent = {name.lower() for name in seen.headers}
    assert not sent & {"signature", "signature-input", "content-digest"}, "the client's signature stays behind"


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs an imToken's exp by its clock and the gateway checks it by the real one.
    return FakeClock(time.time())


async def test_an_openim_sdk_client_reaches_the_old_service_with_its_imtoken_as_its_user(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 3))
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        token = (await client.login({"userID": "carol", "code": GOOD_CODE}))["imToken"]
    async with aiohttp.ClientSession() as http, http.get(gateway.url + READ[1], headers={"token": token}) as response:
        assert response.status == 200, await response.text()
        answer = orjson.loads(await response.read())
        assert answer.get("user") == "carol", answer
    [seen] = old_chat.seen
    assert (seen.headers["X-Legacy-User"], seen.headers["X-Legacy-Platform"]) == ("carol", "5")
    assert "token" not in {name.lower() for name in seen.headers}, "the imToken stays behind"


async def test_the_old_services_answer_reaches_the_client_without_its_cookies_or_internals(
    start_gateway: StartGateway, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 3))
    status, raw, headers = await call(gateway, *READ)
    assert status == 200
    assert orjson.loads(raw) == {"method": "GET", "path": "/v1/conversations/c1/messages", "user": "alice"}
    assert headers["ETag"] == '"v7"'
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Content-Type"].startswith("application/json")
    assert "Set-Cookie" not in headers
    assert "X-Internal" not in headers


async def test_a_large_answer_is_streamed_whole(start_gateway: StartGateway, old_chat_url: str, table: Path) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 3))
    status, raw, headers = await call(gateway, "GET", "/legacy/v1/big")
    assert status == 200
    assert raw == b"x" * (300 * 1024)
    assert headers["Content-Type"] == "application/octet-stream"


# -- refusals --------------------------------------------------------------------------------------------------


async def test_unauthenticated_anonymous_and_banned_callers_never_reach_the_old_service(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path, clean_redis: RedisProcess
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 2))
    async with aiohttp.ClientSession() as http, http.get(gateway.url + READ[1]) as response:
        assert response.status == 401
        assert (await response.json())["errCode"] == 40100
    async with gateway.client() as anonymous:
        await anonymous.handshake(platform_id=5)
        signed = anonymous.signed_headers("GET", READ[1], b"")
        async with aiohttp.ClientSession() as http, http.get(gateway.url + READ[1], headers=signed) as response:
            assert response.status == 401
    with clean_redis.client() as c:
        c.set(keys.ban("mallory"), Ban("mallory", "spam", "t", 0, None).encode())
    status, raw, _ = await call(gateway, *READ, headers=bearer("mallory"))
    assert (status, orjson.loads(raw)["errCode"]) == (403, 40301)
    assert old_chat.seen == []
    route = "/legacy/v1/conversations/{conversationID}/messages"
    assert sample(gateway.app[METRICS], "messenger_gw_legacy_requests_total", route=route, verdict="refused") == 3


async def test_a_path_or_method_outside_the_table_is_refused_unforwarded(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path
) -> None:
    gateway = await start_gateway(**legacy_env(old_chat_url, table, 2))
    status, raw, _ = await call(gateway, "GET", "/legacy/v1/admin/users")
    assert (status, orjson.loads(raw)["errCode"]) == (404, 40400)
    status, raw, headers = await call(gateway, "DELETE", READ[1])
    assert (status, orjson.loads(raw)["errCode"]) == (405, 40500)
    assert set(headers["Allow"].split(",")) == {"GET", "POST"}
    assert old_chat.seen == []


async def test_without_a_legacy_url_the_feature_is_off(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(PHASE="2", JWT_HS256_SECRET=JWT_SECRET)
    status, raw, _ = await call(gateway, *READ)
    assert (status, orjson.loads(raw)["errCode"]) == (404, 40400)


# -- the old service failing -----------------------------------------------------------------------------------


async def test_an_old_service_that_is_down_is_502(start_gateway: StartGateway, table: Path) -> None:
    gateway = await start_gateway(**legacy_env(f"http://{LOOPBACK}:{free_port()}", table, 2))
    status, raw, _ = await call(gateway, *READ)
    assert status == 502
    assert orjson.loads(raw) == {"errCode": 50200, "errMsg": "The legacy chat service is unreachable", "errDlt": ""}
    route = "/legacy/v1/conversations/{conversationID}/messages"
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_legacy_upstream_errors_total", route=route, kind="connect") == 1
    assert sample(metrics, "messenger_gw_legacy_requests_total", route=route, verdict="failed") == 1


async def test_an_old_service_too_slow_to_answer_is_504_within_the_read_timeout(
    start_gateway: StartGateway, old_chat: OldChat, old_chat_url: str, table: Path
) -> None:
    env = legacy_env(old_chat_url, table, 2, LEGACY_READ_TIMEOUT="0.3", LEGACY_TOTAL_TIMEOUT="3")
    gateway = await start_gateway(**env)
    old_chat.delay = 2.0
    started = time.monotonic()
    status, raw, _ = await call(gateway, *READ)
    assert time.monotonic() - started < 1.5
    assert (status, orjson.loads(raw)["errCode"]) == (504, 50400)
    route = "/legacy/v1/conversations/{conversationID}/messages"
    assert sample(gateway.app[METRICS], "messenger_gw_legacy_upstream_errors_total", route=route, kind="timeout") == 1


@pytest.mark.parametrize(
    ("garbage", "kind"),
    [
        (b"garbage\r\n\r\n", "http_version"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "unavailable"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", "unavailable"),
    ],
    ids=["not-http", "cut-short", "broken-gzip"],
)
async def test_an_old_service_answering_garbage_is_502(
    start_gateway: StartGateway, table: Path, garbage: bytes, kind: str
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(garbage)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, LOOPBACK, 0)
    try:
        url = f"http://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        gateway = await start_gateway(**legacy_env(url, table, 2))
        status, raw, _ = await call(gateway, *READ)
    finally:
        server.close()
        await server.wait_closed()
    assert (status, orjson.loads(raw)["errCode"]) == (502, 50200)
    route = "/legacy/v1/conversations/{conversationID}/messages"
    assert sample(gateway.app[METRICS], "messenger_gw_legacy_upstream_errors_total", route=route, kind=kind) == 1


def test_check_config_lists_the_legacy_routes_passing_in_the_phase(
    table: Path, gateway_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from messenger_gw.cli import main

    gateway_env(**legacy_env("http://old-chat:8080", table, 3))
    assert main(["check-config", "--dev"]) == 0
    out = capsys.readouterr().out
    assert "3 of 4: GET /legacy/v1/conversations/{conversationID}/messages," in out
    assert "PUT|DELETE /legacy/v1/groups/{groupID}, GET /legacy/v1/big" in out
    table.write_text(TABLE.replace("/im/msg/send_msg", "/im/msg/sned_msg"))
    assert main(["check-config", "--dev"]) == 2
    err = capsys.readouterr().err
    assert "legacy route table error" in err
    assert "route 2 (/v1/conversations/{conversationID}/messages)" in err
