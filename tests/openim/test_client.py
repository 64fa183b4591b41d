"""The typed OpenIM client against the sandbox and against servers that misbehave."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.metrics import Metrics
from messenger_gw.openim import Deadlines
from messenger_gw.openim._transport.pool import ConnectError, UpstreamPool, _Connection
from messenger_gw.openim.client import (
    ArgsError,
    Exchange,
    IssuedToken,
    NewUser,
    NoPermissionError,
    OpenIMAPIError,
    OpenIMClient,
    OpenIMConnectError,
    OpenIMProtocolError,
    OpenIMTimeout,
    RegisteredAlreadyError,
    TokenError,
    TokenKickedError,
    TokenMalformedError,
    UserInfo,
)
from messenger_gw.sandbox import FakeClock
from tests.conftest import LOOPBACK, OpenIMAt, base_url, free_port, sample

DAY = 86400


async def admin(client: OpenIMClient) -> str:
    return (await client.get_admin_token("openIM123", "imAdmin", operation_id="t")).token


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host=LOOPBACK)
        await server.start_server()
        servers.append(server)
        return base_url(server)

    yield start
    for server in servers:
        await server.close()


def app_answering(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    return app


async def test_admin_and_user_tokens_come_back_typed(openim_client: OpenIMClient) -> None:
    issued = await openim_client.get_admin_token("openIM123", "imAdmin", operation_id="t")
    assert issued.expires_in == 90 * DAY
    await openim_client.user_register(issued.token, [NewUser("u1", "Alice")], operation_id="t")
    user = await openim_client.get_user_token(issued.token, "u1", 5, operation_id="t")
    assert isinstance(user, IssuedToken)
    parsed = await openim_client.parse_token(user.token, operation_id="t")
    assert (parsed.user_id, parsed.platform_id) == ("u1", 5)


async def test_user_routes_come_back_typed(openim_client: OpenIMClient, fake_clock: FakeClock) -> None:
    token = await admin(openim_client)
    await openim_client.user_register(token, [NewUser("u1", "Alice", ex="x")], operation_id="t")
    assert await openim_client.get_users_info(token, ["u1", "ghost"], operation_id="t") == [
        UserInfo("u1", "Alice", "", "x", int(fake_clock() * 1000), 0, 0)
    ]
    assert await openim_client.get_users_info(token, ["ghost"], operation_id="t") == []
    assert await openim_client.account_check(token, ["u1", "ghost"], operation_id="t") == {"u1": True, "ghost": False}
    assert await openim_client.get_server_time(token, operation_id="t") == int(fake_clock() * 1000)


async def test_error_codes_raise_their_exception(openim_client: OpenIMClient) -> None:
    token = await admin(openim_client)
    await openim_client.user_register(token, [NewUser("u1", "A")], operation_id="t")
    with pytest.raises(RegisteredAlreadyError) as registered:
        await openim_client.user_register(token, [NewUser("u1", "A")], operation_id="t")
    assert (registered.value.errcode, registered.value.detail) == (1102, "userID registered already")
    with pytest.raises(NoPermissionError):
        await openim_client.get_admin_token("wrong", "imAdmin", operation_id="t")
    with pytest.raises(ArgsError):
        await openim_client.get_admin_token("openIM123", "", operation_id="t")


async def test_token_errors_are_one_family(openim_client: OpenIMClient) -> None:
    with pytest.raises(TokenMalformedError) as malformed:
        await openim_client.get_server_time("abc", operation_id="t")
    assert isinstance(malformed.value, TokenError)
    assert "abc" not in str(malformed.value), "errDlt quotes the token; the message must not"
    token = await admin(openim_client)
    await openim_client.user_register(token, [NewUser("u1", "A")], operation_id="t")
    user = await openim_client.get_user_token(token, "u1", 1, operation_id="t")
    await openim_client.force_logout(token, "u1", 1, operation_id="t")
    with pytest.raises(TokenKickedError):
        await openim_client.get_server_time(user.token, operation_id="t")


async def test_unknown_codes_in_the_token_range_are_token_errors() -> None:
    assert isinstance(OpenIMAPIError.from_envelope(1508, "x", ""), TokenError) is False
    assert type(OpenIMAPIError.from_envelope(1601, "ConnOverMaxNumLimit", "")) is OpenIMAPIError
    assert isinstance(OpenIMAPIError.from_envelope(1502, "TokenInvalidError", ""), TokenError)


async def test_operation_id_and_token_headers_are_sent_on_every_call(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.headers.get("operationID"), request.headers.get("token")))
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {"serverTime": 5}})

    client = openim_at(await serve(app_answering(record)))
    assert await client.get_server_time("tok", operation_id="op-42") == 5
    assert seen == [("op-42", "tok")]


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"404 page not found"), (500, b""), (200, b"<html>"), (200, b'{"unexpected": true}'), (502, b"{}")],
)
async def test_answers_that_are_not_the_envelope_are_protocol_errors(
    serve: Callable[[web.Application], Awaitable[str]],
    openim_at: OpenIMAt,
    status: int,
    body: bytes,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    metrics = Metrics()
    client = openim_at(await serve(app_answering(answer)), metrics=metrics)
    with pytest.raises(OpenIMProtocolError):
        await client.get_server_time("tok", operation_id="t")
    assert sample(metrics, "messenger_gw_openim_errors_total", route="/msg/get_server_time", kind="protocol") == 1


async def test_data_missing_its_fields_is_a_protocol_error(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {"token": 7}})

    client = openim_at(await serve(app_answering(answer)))
    with pytest.raises(OpenIMProtocolError, match=r"data\.token"):
        await client.get_admin_token("s", "imAdmin", operation_id="t")


async def test_unreachable_openim_is_a_clear_connect_error(openim_at: OpenIMAt) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    client = openim_at(url)
    with pytest.raises(OpenIMConnectError, match=re.escape(f"cannot connect to OpenIM at {url}")):
        await client.get_server_time("tok", operation_id="t")


async def test_a_slow_answer_is_a_timeout(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"errCode": 0})

    client = openim_at(await serve(app_answering(stall)), deadlines=Deadlines(read=0.2, total=5))
    try:
        with pytest.raises(OpenIMTimeout):
            await client.get_server_time("tok", operation_id="t")
    finally:
        release.set()


async def test_errcodes_are_counted_by_route_and_code(openim_client: OpenIMClient, metrics: Metrics) -> None:
    with pytest.raises(TokenError):
        await openim_client.get_server_time("abc", operation_id="t")
    assert sample(metrics, "messenger_gw_openim_errcodes_total", route="/msg/get_server_time", code="1503") == 1


def test_issued_token_repr_hides_the_token() -> None:
    assert "secret-token" not in repr(IssuedToken("secret-token", 60))


class OneFailedConnect(UpstreamPool):
    """Refuses the first connection it is asked for, as a restarting OpenIM would."""

    refused = 0

    async def _connect(self) -> _Connection:
        if not self.refused:
            self.refused += 1
            raise ConnectError("cannot connect: refused")
        return await super()._connect()


async def test_a_failed_connect_is_tried_once_more(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {"serverTime": 5}})

    url = await serve(app_answering(answer))
    pool = OneFailedConnect(url, max_connections=1, connect=1, pool=1)
    assert await openim_at(url, pool=pool).get_server_time("tok", operation_id="t") == 5
    assert pool.refused == 1


async def test_a_call_that_reached_openim_is_never_sent_again(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    received = 0

    async def fail(request: web.Request) -> web.Response:
        nonlocal received
        received += 1
        return web.Response(status=500)

    client = openim_at(await serve(app_answering(fail)))
    with pytest.raises(OpenIMProtocolError):
        await client.get_server_time("tok", operation_id="t")
    assert received == 1


async def test_time_the_caller_spends_between_reads_is_not_openims(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    body = b"x" * (1 << 20)

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=body)

    metrics = Metrics()
    client = openim_at(await serve(app_answering(large)), metrics=metrics, deadlines=Deadlines(read=0.1, total=0.3))
    exchange = client.exchange("/msg/get_server_time", b"{}", [("operationID", "t")])
    parts = []
    async with exchange:
        while part := await exchange.read(65536):
            parts.append(part)
            await asyncio.sleep(0.05)  # writing it to a slow client: 16 parts, 0.8 s in all
    assert b"".join(parts) == body
    assert sample(metrics, "messenger_gw_openim_errors_total", route="/msg/get_server_time", kind="timeout") == 0


async def test_openim_dripping_an_answer_slower_than_its_total_is_a_timeout(
    serve: Callable[[web.Application], Awaitable[str]], openim_at: OpenIMAt
) -> None:
    async def dripping(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(20):  # a part every 0.05 s: each within the read deadline, 1 s in all
            await response.write(b"x" * 1000)
            await asyncio.sleep(0.05)
        return response

    client = openim_at(await serve(app_answering(dripping)), deadlines=Deadlines(read=0.2, total=0.4))
    exchange = client.exchange("/msg/get_server_time", b"{}", [("operationID", "t")])
    started = time.monotonic()
    with pytest.raises(OpenIMTimeout):
        await read_all(exchange)
    assert 0.4 <= time.monotonic() - started < 0.8


async def read_all(exchange: Exchange) -> bytes:
    async with exchange:
        parts = []
        while part := await exchange.read(65536):
            parts.append(part)
        return b"".join(parts)
