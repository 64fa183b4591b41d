"""Login and provisioning end to end: gateway, user-service contract, sandbox, real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import orjson
import pytest
from aiohttp.test_utils import TestServer

from messenger_gw import keys
from messenger_gw.app import create_app
from messenger_gw.moderation import Ban
from messenger_gw.sandbox import FakeClock, Sandbox, TokenState
from messenger_gw.sdk import GatewayClient, GatewayResponseError
from messenger_gw.settings import Settings
from tests.conftest import (
    GOOD_CODE,
    LOOPBACK,
    FakeUserService,
    Gateway,
    RedisProcess,
    StartGateway,
    base_url,
    free_port,
)

GET_USER_TOKEN = "/auth/get_user_token"
REGISTER = "/user/user_register"


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


async def log_in(gateway: Gateway, user_id: str, platform_id: int, code: str = GOOD_CODE) -> tuple[GatewayClient, Any]:
    client = gateway.client()
    await client.handshake(platform_id=platform_id)
    try:
        return client, await client.login({"userID": user_id, "code": code})
    except BaseException:
        await client.close()
        raise


def stored_tokens(redis: RedisProcess, user_id: str) -> dict[str, dict[str, Any]]:
    with redis.client() as c:
        return {k.decode(): orjson.loads(v) for k, v in c.hgetall(keys.im_token(user_id)).items()}


def token_state(sandbox: Sandbox, token: str) -> TokenState:
    return sandbox.tokens[token].state


async def test_a_new_user_is_registered_and_gets_a_stored_token(
    gateway: Gateway, sandbox: Sandbox, clean_redis: RedisProcess, fake_clock: FakeClock
) -> None:
    client, reply = await log_in(gateway, "alice", 5)
    async with client:
        assert set(reply) == {"userID", "imToken", "wsURL", "apiAddr", "expiresAt"}
        assert reply["userID"] == "alice"
        assert reply["wsURL"] == "ws://127.0.0.1:10001"
        assert reply["apiAddr"] == "https://chat.example.com/im", "PUBLIC_IM_URL, the OpenIM SDK's apiAddr"
        assert sandbox.users["alice"]["nickname"] == "Alice"
        caller, _ = sandbox.verify_token(reply["imToken"])
        assert (caller.user_id, caller.platform_id) == ("alice", 5)
        assert stored_tokens(clean_redis, "alice") == {
            "5": {"token": reply["imToken"], "expiresAt": reply["expiresAt"]}
        }
        session = (await client.request("GET", "/auth/session")).json()
        assert session["userID"] == "alice"


async def test_a_returning_user_reuses_the_stored_token_and_keeps_the_other_device(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    first, first_reply = await log_in(gateway, "bob", 1)
    mints = sandbox.calls[GET_USER_TOKEN]
    second, second_reply = await log_in(gateway, "bob", 1)
    async with first, second:
        assert second_reply["imToken"] == first_reply["imToken"]
        assert sandbox.calls[GET_USER_TOKEN] == mints, "no new mint"
        assert token_state(sandbox, first_reply["imToken"]) == TokenState.NORMAL, "the other device is not kicked"


async def test_two_platforms_keep_both_tokens_valid(
    gateway: Gateway, sandbox: Sandbox, clean_redis: RedisProcess
) -> None:
    phone, phone_reply = await log_in(gateway, "carol", 1)
    web, web_reply = await log_in(gateway, "carol", 5)
    async with phone, web:
        for reply, platform in ((phone_reply, 1), (web_reply, 5)):
            caller, _ = sandbox.verify_token(reply["imToken"])
            assert caller.platform_id == platform
        assert set(stored_tokens(clean_redis, "carol")) == {"1", "5"}


async def test_a_kicked_stored_token_is_replaced(gateway: Gateway, sandbox: Sandbox, fake_clock: FakeClock) -> None:
    first, first_reply = await log_in(gateway, "dave", 2)
    sandbox.kick("dave", 2)
    fake_clock.advance(1)
    second, second_reply = await log_in(gateway, "dave", 2)
    async with first, second:
        assert second_reply["imToken"] != first_reply["imToken"]
        sandbox.verify_token(second_reply["imToken"])


async def test_a_banned_user_cannot_log_in(gateway: Gateway, sandbox: Sandbox, clean_redis: RedisProcess) -> None:
    with clean_redis.client() as c:
        c.set(keys.ban("mallory"), Ban("mallory", "spam", "admin", int(time.time()), None).encode())
    client = gateway.client()
    async with client:
        await client.handshake(platform_id=5)
        with pytest.raises(GatewayResponseError) as refused:
            await client.login({"userID": "mallory", "code": GOOD_CODE})
        assert (refused.value.status, refused.value.err_code) == (403, 40301)
        assert (await client.request("GET", "/auth/session")).json()["userID"] is None
    assert "mallory" not in sandbox.users
    assert stored_tokens(clean_redis, "mallory") == {}


async def test_a_wrong_code_is_401_and_changes_nothing(
    gateway: Gateway, sandbox: Sandbox, clean_redis: RedisProcess
) -> None:
    client = gateway.client()
    async with client:
        await client.handshake(platform_id=5)
        with pytest.raises(GatewayResponseError) as refused:
            await client.login({"userID": "erin", "code": "000000"})
        assert (refused.value.status, refused.value.err_code) == (401, 40101)
    assert "erin" not in sandbox.users
    assert stored_tokens(clean_redis, "erin") == {}


@pytest.mark.parametrize("mode", ["down", "garbage", "refuse", "unreachable"])
async def test_user_service_trouble_is_a_clear_503_with_nothing_half_written(
    start_gateway: StartGateway,
    user_service: FakeUserService,
    sandbox: Sandbox,
    clean_redis: RedisProcess,
    mode: str,
) -> None:
    overrides = {"USER_SERVICE_URL": f"http://127.0.0.1:{free_port()}"} if mode == "unreachable" else {}
    gateway = await start_gateway(**overrides)
    user_service.mode = mode
    client = gateway.client()
    async with client:
        await client.handshake(platform_id=5)
        with pytest.raises(GatewayResponseError) as unavailable:
            await client.login({"userID": "frank", "code": GOOD_CODE})
        assert (unavailable.value.status, unavailable.value.err_code) == (503, 50301)
        assert (await client.request("GET", "/auth/session")).json()["userID"] is None, "session stays anonymous"
    assert "frank" not in sandbox.users
    assert sandbox.calls[GET_USER_TOKEN] == 0
    assert stored_tokens(clean_redis, "frank") == {}


async def test_the_user_service_gets_the_documented_request(gateway: Gateway, user_service: FakeUserService) -> None:
    client, _ = await log_in(gateway, "grace", 3)
    await client.close()
    [request] = user_service.requests
    assert request["authorization"] == "Bearer user-service-token-value"
    assert request["body"] == {"credentials": {"userID": "grace", "code": GOOD_CODE}, "platformID": 3}


async def test_login_needs_a_credentials_object(gateway: Gateway) -> None:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        reply = await client.request("POST", "/auth/login", {"userID": "x"})
        assert reply.status == 400
        assert reply.json()["errCode"] == 40002


async def test_a_session_cannot_switch_users(gateway: Gateway) -> None:
    client, _ = await log_in(gateway, "heidi", 5)
    async with client:
        with pytest.raises(GatewayResponseError) as refused:
            await client.login({"userID": "ivan", "code": GOOD_CODE})
        assert (refused.value.status, refused.value.err_code) == (403, 40302)
        await client.login({"userID": "heidi", "code": GOOD_CODE})  # the same user again is fine


async def test_openim_down_during_login_is_502_and_the_session_stays_anonymous(
    start_gateway: StartGateway, clean_redis: RedisProcess
) -> None:
    gateway = await start_gateway(OPENIM_API_URL=f"http://127.0.0.1:{free_port()}")
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        with pytest.raises(GatewayResponseError) as unavailable:
            await client.login({"userID": "judy", "code": GOOD_CODE})
        assert (unavailable.value.status, unavailable.value.err_code) == (502, 50200)
        assert (await client.request("GET", "/auth/session")).json()["userID"] is None
    assert stored_tokens(clean_redis, "judy") == {}


async def concurrent_logins(gateways: list[Gateway], user_id: str, platform_id: int, count: int) -> set[str]:
    """``count`` sessions, spread over ``gateways``, log in at once; the distinct imTokens they got."""
    clients = [gateways[i % len(gateways)].client() for i in range(count)]
    try:
        for client in clients:
            await client.handshake(platform_id=platform_id)
        replies = await asyncio.gather(*(c.login({"userID": user_id, "code": GOOD_CODE}) for c in clients))
    finally:
        for client in clients:
            await client.close()
    return {reply["imToken"] for reply in replies}


async def test_concurrent_logins_of_one_user_and_platform_mint_once(gateway: Gateway, sandbox: Sandbox) -> None:
    assert len(await concurrent_logins([gateway], "karl", 4, 20)) == 1
    assert sandbox.calls[REGISTER] == 1
    assert sandbox.calls[GET_USER_TOKEN] == 2  # 1004 for the unknown user, then the mint after registering


async def test_concurrent_logins_across_two_replicas_mint_once(start_gateway: StartGateway, sandbox: Sandbox) -> None:
    replicas = [await start_gateway(), await start_gateway()]
    assert len(await concurrent_logins(replicas, "lena", 6, 10)) == 1
    assert sandbox.calls[GET_USER_TOKEN] == 2


async def test_a_jwt_caller_logs_in_without_credentials(start_gateway: StartGateway, sandbox: Sandbox) -> None:
    secret = "a-jwt-secret-of-at-least-32-bytes!!"
    gateway = await start_gateway(JWT_HS256_SECRET=secret)
    token = jwt.encode({"sub": "mike", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    async with GatewayClient(gateway.url) as client:
        reply = await client._send(
            "POST", "/auth/login", b"", {"Authorization": f"Bearer {token}", "X-Platform-ID": "2"}
        )
    assert reply.status == 200
    assert reply.json()["userID"] == "mike"
    caller, _ = sandbox.verify_token(reply.json()["imToken"])
    assert caller.platform_id == 2


async def test_dev_mode_otp_verifier(sandbox_server: TestServer) -> None:
    settings = Settings.from_env({"MESSENGER_GW_OPENIM_API_URL": base_url(sandbox_server)}, dev=True)
    server = TestServer(create_app(settings), host=LOOPBACK)
    await server.start_server()
    try:
        async with GatewayClient(base_url(server)) as client:
            await client.handshake(platform_id=5)
            with pytest.raises(GatewayResponseError) as wrong:
                await client.login({"userID": "nina", "code": "111111"})
            assert wrong.value.err_code == 40101
            assert (await client.login({"userID": "nina", "code": "000000"}))["userID"] == "nina"
    finally:
        await server.close()


# -- /internal/provision ---------------------------------------------------------------------

SERVICE_TOKEN = "internal-service-token-0123"


async def provision(gateway: Gateway, body: Any, token: str | None = SERVICE_TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with GatewayClient(gateway.url) as client:
        reply = await client._send("POST", "/internal/provision", orjson.dumps(body), headers)
    return reply.status, reply.json()


async def test_internal_provision_is_off_without_a_service_token(gateway: Gateway) -> None:
    status, body = await provision(gateway, {"userID": "olga", "platformID": 1})
    assert (status, body["errCode"]) == (404, 40400)


async def test_internal_provision_provisions_for_the_user_service(
    start_gateway: StartGateway, sandbox: Sandbox
) -> None:
    gateway = await start_gateway(INTERNAL_SERVICE_TOKEN=SERVICE_TOKEN)
    status, body = await provision(gateway, {"userID": "olga", "platformID": 1, "nickname": "Olga"})
    assert status == 200
    assert body["userID"] == "olga"
    assert body["apiAddr"] == "https://chat.example.com/im"
    assert sandbox.users["olga"]["nickname"] == "Olga"
    sandbox.verify_token(body["imToken"])


@pytest.mark.parametrize(
    ("body", "token", "status", "code"),
    [
        ({"userID": "olga", "platformID": 1}, "wrong-token-0123456789", 401, 40100),
        ({"userID": "olga", "platformID": 1}, None, 401, 40100),
        ({"userID": "bad id", "platformID": 1}, SERVICE_TOKEN, 400, 40002),
        ({"userID": "olga", "platformID": 10}, SERVICE_TOKEN, 400, 40012),
        ({"userID": "olga", "platformID": 1, "nickname": ""}, SERVICE_TOKEN, 400, 40002),
    ],
)
async def test_internal_provision_rejects_bad_requests(
    start_gateway: StartGateway, body: Any, token: str | None, status: int, code: int
) -> None:
    gateway = await start_gateway(INTERNAL_SERVICE_TOKEN=SERVICE_TOKEN)
    reply_status, reply = await provision(gateway, body, token)
    assert (reply_status, reply["errCode"]) == (status, code)


async def test_internal_provision_refuses_banned_users(start_gateway: StartGateway, clean_redis: RedisProcess) -> None:
    gateway = await start_gateway(INTERNAL_SERVICE_TOKEN=SERVICE_TOKEN)
    with clean_redis.client() as c:
        c.set(keys.ban("pete"), Ban("pete", "spam", "admin", 0, None).encode())
    status, body = await provision(gateway, {"userID": "pete", "platformID": 1})
    assert (status, body["errCode"]) == (403, 40301)
