"""/im for clients of the official OpenIM SDK: ``token: <imToken>`` as the SDK sends it, verified by the gateway,
every refusal made without a call to OpenIM and answered as OpenIM answers (HTTP 200, the envelope).

The upstream is the sandbox behind a recorder, as in ``test_proxy.py``; the store a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from jwt.warnings import InsecureKeyLengthWarning

from messenger_gw import keys
from messenger_gw.admin import MODERATION
from messenger_gw.metrics import METRICS
from messenger_gw.moderation import BANS, Ban
from messenger_gw.sandbox import FakeClock, Sandbox
from tests.conftest import GOOD_CODE, Gateway, Recorder, RedisProcess, StartGateway, sample
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import ws_url  # noqa: F401 - a fixture

SECRET = "openIM123"  # the gateway's OPENIM_SECRET in these tests, OpenIM's default


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs exp by its clock and the gateway checks it by the real one: let them agree.
    return FakeClock(time.time())


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(PHASE="4")


async def log_in(gateway: Gateway, user_id: str, platform_id: int = 5) -> str:
    """An imToken, as a client gets it: logging in through the gateway."""
    async with gateway.client() as client:
        await client.handshake(platform_id=platform_id)
        reply = await client.login({"userID": user_id, "code": GOOD_CODE})
    token: str = reply["imToken"]
    return token


async def sdk_call(
    gateway: Gateway, path: str, body: Any, token: str, *, operation_id: str = "op-sdk-1"
) -> tuple[int, Any, dict[str, str]]:
    """POST as the SDK does (openim-sdk-protocol.md section 3.1): token, operationID, reqFuncName, a JSON body."""
    headers = {
        "Content-Type": "application/json",
        "token": token,
        "operationID": operation_id,
        "reqFuncName": "GetSelfUserInfo",
        "Accept-Encoding": "identity",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + path, data=orjson.dumps(body), headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None, dict(response.headers)


def openim_token(user_id: str, platform_id: int = 5, *, expires_in: float = 86400, secret: str = SECRET) -> str:
    now = int(time.time())
    claims = {"UserID": user_id, "PlatformID": platform_id, "exp": int(now + expires_in), "iat": now - 5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # OpenIM's default secret is 9 bytes
        return jwt.encode(claims, secret, algorithm="HS256")


def store_token(redis: RedisProcess, user_id: str, platform_id: int, token: str) -> None:
    value = orjson.dumps({"token": token, "expiresAt": int(time.time()) + 86400})
    with redis.client() as c:
        c.hset(keys.im_token(user_id), str(platform_id), value)


def asked_since(recorder: Recorder, count: int) -> list[str]:
    """The OpenIM routes called after the first ``count`` calls, but for the admin-token refresher's own."""
    return [r.path for r in recorder.requests[count:] if r.path != "/auth/get_admin_token"]


def failures(gateway: Gateway, reason: str) -> float:
    return sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason=reason)


GET_USERS_INFO = "/im/user/get_users_info"


async def test_a_request_as_the_sdk_sends_it_reaches_openim_with_its_token_and_without_reqfuncname(
    gateway: Gateway, recorder: Recorder
) -> None:
    token = await log_in(gateway, "alice")
    status, body, headers = await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, token)
    assert (status, body["errCode"]) == (200, 0)
    assert body["data"]["usersInfo"][0]["userID"] == "alice"
    assert headers["X-Request-ID"] == "op-sdk-1", "the SDK's operationID is the request's"
    [seen] = recorder.to("/user/get_users_info")
    sent = {name.lower(): value for name, value in seen.headers.items()}
    assert sent["token"] == token
    assert sent["operationid"] == "op-sdk-1"
    assert "reqfuncname" not in sent
    assert seen.json() == {"userIDs": ["alice"]}


# -- refused, each without a call to OpenIM -----------------------------------------------------------------

Prepare = Callable[[Gateway, Sandbox, RedisProcess, FakeClock], Awaitable[str]]


async def replaced_by_a_newer_login(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    old = await log_in(gateway, "alice")
    assert (await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, old))[1]["errCode"] == 0
    sandbox.kick("alice", 5)  # OpenIM no longer takes it, so the next login mints
    clock.advance(1)
    assert await log_in(gateway, "alice") != old
    return old


async def forced_out(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    token = await log_in(gateway, "alice")
    await gateway.app[MODERATION].log_out_everywhere("alice", None, "op-force-logout")
    return token


async def logged_out(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        token: str = (await client.login({"userID": "alice", "code": GOOD_CODE}))["imToken"]
        await client.logout()
    return token


async def expired(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    token = openim_token("alice", expires_in=-1)
    store_token(redis, "alice", 5, token)  # stored, signed right: only its exp is wrong
    return token


async def wrongly_signed(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    token = openim_token("alice", secret="not-openims-secret")
    store_token(redis, "alice", 5, token)
    return token


async def banned_at_once(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    token = await log_in(gateway, "alice")
    # Only the ban record: the stored token is still there, so the ban alone must stop it.
    await gateway.app[BANS].put(Ban("alice", "spam", "test", int(time.time()), None), now=time.time())
    return token


async def banned_by_moderation(gateway: Gateway, sandbox: Sandbox, redis: RedisProcess, clock: FakeClock) -> str:
    token = await log_in(gateway, "alice")
    await gateway.app[MODERATION].ban("alice", reason="spam", actor="test", expires_in=None, operation_id="op-ban")
    return token


@pytest.mark.parametrize(
    ("prepare", "reason", "err_code"),
    [
        (replaced_by_a_newer_login, "im_token_replaced", 40100),
        (forced_out, "im_token_revoked", 40100),
        (logged_out, "im_token_revoked", 40100),
        (expired, "im_token_expired", 40100),
        (wrongly_signed, "im_token_bad_signature", 40100),
        (banned_at_once, "im_token_banned", 40301),
        (banned_by_moderation, "im_token_banned", 40301),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_a_token_the_gateway_does_not_accept_never_reaches_openim(
    gateway: Gateway,
    sandbox: Sandbox,
    clean_redis: RedisProcess,
    fake_clock: FakeClock,
    recorder: Recorder,
    prepare: Prepare,
    reason: str,
    err_code: int,
) -> None:
    token = await prepare(gateway, sandbox, clean_redis, fake_clock)
    asked_before = len(recorder.requests)
    status, body, _ = await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, token)
    assert status == 200, "the SDK reads an errCode off a 200 only"
    assert set(body) == {"errCode", "errMsg", "errDlt"}
    assert body["errCode"] == err_code
    assert asked_since(recorder, asked_before) == [], "OpenIM was not asked"
    assert failures(gateway, reason) == 1


async def test_a_token_replaced_through_one_replica_is_refused_by_the_other(
    start_gateway: StartGateway, sandbox: Sandbox, fake_clock: FakeClock, recorder: Recorder
) -> None:
    replica_a, replica_b = await start_gateway(PHASE="4"), await start_gateway(PHASE="4")
    old = await log_in(replica_a, "alice")
    assert (await sdk_call(replica_b, GET_USERS_INFO, {"userIDs": ["alice"]}, old))[1]["errCode"] == 0  # remembered
    sandbox.kick("alice", 5)
    fake_clock.advance(1)
    await log_in(replica_a, "alice")  # the new token is minted through A
    async with asyncio.timeout(1):  # the invalidation's trip through redis, never a cache's expiry
        while (await sdk_call(replica_b, GET_USERS_INFO, {"userIDs": ["alice"]}, old))[1]["errCode"] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    asked_before = len(recorder.requests)
    status, body, _ = await sdk_call(replica_b, GET_USERS_INFO, {"userIDs": ["alice"]}, old)
    assert (status, body["errCode"]) == (200, 40100)
    assert asked_since(recorder, asked_before) == []
    assert failures(replica_b, "im_token_replaced") >= 1


# -- answered as OpenIM answers, for imToken callers only ---------------------------------------------------


async def test_every_refusal_of_an_imtoken_caller_is_http_200_and_a_signed_callers_keeps_its_status(
    gateway: Gateway, recorder: Recorder
) -> None:
    token = await log_in(gateway, "alice")
    async with gateway.client() as signed:
        await signed.handshake(platform_id=5)
        await signed.login({"userID": "alice", "code": GOOD_CODE})
        cases = [
            ("/im/no/such_route", {}, 404, 40400),
            ("/im/user/update_user_info_ex", {"userInfo": {"userID": "bob"}}, 403, 40303),
            (GET_USERS_INFO, b"[not json", 400, 40001),
        ]
        for path, body, status, code in cases:
            raw = body if isinstance(body, bytes) else orjson.dumps(body)
            as_signed = await signed.request("POST", path, raw)
            assert (as_signed.status, as_signed.json()["errCode"]) == (status, code), path
            as_sdk = await sdk_call_raw(gateway, path, raw, token)
            assert (as_sdk.status, as_sdk.json["errCode"]) == (200, code), path
    assert recorder.to("/user/update_user_info_ex") == []


class Answer:
    def __init__(self, status: int, raw: bytes) -> None:
        self.status = status
        self.json: dict[str, Any] = orjson.loads(raw)


async def sdk_call_raw(gateway: Gateway, path: str, raw: bytes, token: str) -> Answer:
    headers = {"Content-Type": "application/json", "token": token, "operationID": "op-sdk-2"}
    async with aiohttp.ClientSession() as http, http.post(gateway.url + path, data=raw, headers=headers) as response:
        return Answer(response.status, await response.read())


async def test_a_token_openim_refuses_is_its_answer_without_a_new_token_or_a_replay(
    gateway: Gateway, sandbox: Sandbox, recorder: Recorder
) -> None:
    token = await log_in(gateway, "alice")

    async def kicked(request: web.Request) -> web.Response:
        return web.json_response({"errCode": 1506, "errMsg": "TokenKickedError", "errDlt": "TokenKickedError"})

    recorder.overrides["/user/get_users_info"] = kicked
    mints = sandbox.calls["/auth/get_user_token"]
    status, body, _ = await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, token)
    assert (status, body) == (200, {"errCode": 1506, "errMsg": "TokenKickedError", "errDlt": ""})
    assert len(recorder.to("/user/get_users_info")) == 1, "no replay: the token is the client's own"
    assert sandbox.calls["/auth/get_user_token"] == mints, "no new token the client would not hold"


async def test_with_imtoken_authentication_off_a_token_is_a_plain_401(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(PHASE="4", IM_TOKEN_AUTH="off")
    token = await log_in(gateway, "alice")
    asked_before = len(recorder.requests)
    status, body, _ = await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, token)
    assert (status, body["errCode"]) == (401, 40100)
    assert asked_since(recorder, asked_before) == []
    assert failures(gateway, "im_token_disabled") == 1


async def test_the_token_is_never_logged(
    gateway: Gateway, clean_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    token = await log_in(gateway, "alice")
    forged = openim_token("alice", secret="not-openims-secret")
    with caplog.at_level(logging.DEBUG):
        await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, token)
        await sdk_call(gateway, GET_USERS_INFO, {"userIDs": ["alice"]}, forged)
        await sdk_call(gateway, "/im/no/such_route", {}, token)
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "errCode" in logged, "the refusals were logged"
    for secret in (token, forged, token.rsplit(".", 1)[1], forged.rsplit(".", 1)[1]):
        assert secret not in logged


# -- the official SDK, its REST calls through the gateway ---------------------------------------------------


@pytest.mark.slow
async def test_the_official_sdk_chats_with_the_gateways_im_as_its_apiaddr(
    gateway: Gateway,
    ws_url: str,  # noqa: F811 - the imported fixture
    recorder: Recorder,
) -> None:
    """Scenario 1 of the sandbox's SDK tests, logged in through the gateway: the SDK's REST calls go to the
    login's apiAddr with its imToken (its WebSocket still straight to the sandbox's msg-gateway)."""
    logins = {}
    for user_id in ("alice", "bob"):
        async with gateway.client() as client:
            await client.handshake(platform_id=5)
            reply = await client.login({"userID": user_id, "code": GOOD_CODE})
        assert reply["apiAddr"] == "https://chat.example.com/im"  # these tests' PUBLIC_IM_URL, not served here
        logins[user_id] = {"userID": user_id, "token": reply["imToken"], "platformID": 5,
                           "apiAddr": gateway.url + "/im", "wsAddr": ws_url}  # fmt: skip
    result = await run_scenario("chat.mjs", logins)
    assert result["failures"] == []
    assert result["sent"]["ok"]
    assert result["answered"]["ok"]
    assert [m["text"] for m in result["history"]] == ["hello bob"]
    assert result["aliceReceived"][0]["text"] == "hi alice"
    assert result["unhandled"] == []
    through_gateway = [r for r in recorder.requests if "reqfuncname" in {n.lower() for n in r.headers}]
    assert through_gateway == [], "no reqFuncName reached OpenIM"
    assert recorder.to("/user/get_users_info"), "the SDK's sync went through /im"
