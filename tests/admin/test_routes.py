"""The admin API against the sandbox: authentication, every operation and mapped error, audit, ban."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw import keys
from messenger_gw.admin import AUDIT_LOG, MODERATION, AuditEntry, AuditLog, retrying_writes
from messenger_gw.admin.routes import AUDIT_HEADER
from messenger_gw.app import create_app
from messenger_gw.keys import AUDIT_STREAM
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.sandbox import FakeClock, Sandbox, TokenState
from messenger_gw.sdk import GatewayClient
from messenger_gw.store import RedisStore
from tests.conftest import (
    GOOD_CODE,
    LOOPBACK,
    Gateway,
    Recorder,
    RedisProcess,
    StartGateway,
    base_url,
    free_port,
    gateway_settings,
    sample,
)

OPS_KEY = "ops-key-0123456789abcdef"
JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes!!"
REASON = {"reason": "spam reported by three users"}


def admin_settings(**extra: str) -> dict[str, str]:
    return {
        "ADMIN_API_KEYS": f"ops:{hashlib.sha256(OPS_KEY.encode()).hexdigest()},other:{'0' * 64}",
        "JWT_HS256_SECRET": JWT_SECRET,
        "PHASE": "4",
    } | extra


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(**admin_settings())


async def call(
    gateway: Gateway,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = OPS_KEY,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    sent |= headers or {}
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, gateway.url + path, data=data, headers=sent) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None, dict(response.headers)


async def audit_entries(gateway: Gateway, **filters: str) -> list[dict[str, Any]]:
    status, body, _ = (
        await call(gateway, "GET", "/admin/audit", headers={})
        if not filters
        else await call(gateway, "GET", "/admin/audit?" + "&".join(f"{k}={v}" for k, v in filters.items()))
    )
    assert status == 200
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def logged_in(gateway: Gateway, user_id: str, platform_id: int) -> GatewayClient:
    client = gateway.client()
    await client.handshake(platform_id=platform_id)
    await client.login({"userID": user_id, "code": GOOD_CODE})
    return client


def admin_jwt(**claims: Any) -> str:
    return jwt.encode({"sub": "carol_admin", "exp": int(time.time()) + 60} | claims, JWT_SECRET, algorithm="HS256")


# -- who may call --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "headers", "status", "reason"),
    [
        (None, {}, 401, "admin_missing_credentials"),
        ("not-a-configured-key", {}, 401, "admin_bad_key"),
        # Made at collection, long before the test may run: valid for good.
        (admin_jwt(roles=["user"], exp=2**40), {}, 403, "admin_not_admin"),
        (admin_jwt(roles="support", exp=2**40), {}, 403, "admin_not_admin"),
        (jwt.encode({"sub": "x", "exp": 1}, JWT_SECRET, algorithm="HS256"), {}, 401, "admin_jwt_expired"),
        (jwt.encode({"sub": "x", "exp": 2**40}, "another-secret-of-32-bytes-or-more!!", algorithm="HS256"), {}, 401,
         "admin_jwt_invalid"),
        (jwt.encode({"sub": "x", "exp": 2**40}, "k" * 64, algorithm="HS384"), {}, 401, "admin_jwt_algorithm"),
        (OPS_KEY, {"Signature-Input": 'sig1=("@method");keyid="s"', "Signature": "sig1=:AA==:"}, 401,
         "admin_client_signature"),
    ],
)  # fmt: skip
async def test_admin_routes_refuse_everyone_else(
    gateway: Gateway, key: str | None, headers: dict[str, str], status: int, reason: str
) -> None:
    before = sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason=reason)
    reply_status, body, _ = await call(gateway, "GET", "/admin/bans", key=key, headers=headers)
    assert reply_status == status
    assert body["errCode"] == (40100 if status == 401 else 40300)
    assert sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason=reason) == before + 1


async def test_an_admin_key_or_admin_jwt_is_accepted_and_named_in_the_audit(gateway: Gateway) -> None:
    assert (await call(gateway, "GET", "/admin/bans"))[0] == 200
    assert (await call(gateway, "GET", "/admin/bans", key=admin_jwt(roles=["admin", "user"])))[0] == 200
    actors = [e["actor"] for e in await audit_entries(gateway, operation="bans.list")]
    assert actors == ["jwt:carol_admin", "key:ops"]


async def test_refused_calls_are_audited_too(gateway: Gateway) -> None:
    await call(gateway, "GET", "/admin/bans", key="wrong")
    [entry] = await audit_entries(gateway, operation="bans.list")
    assert entry["actor"] == "-"
    assert entry["outcome"] == "401 errCode 40100"


async def test_admin_keys_are_refused_on_client_routes(gateway: Gateway) -> None:
    for method, path in (("GET", "/auth/session"), ("POST", "/im/msg/get_server_time"), ("POST", "/auth/login")):
        status, body, _ = await call(gateway, method, path, {})
        assert (status, body["errCode"]) == (401, 40100), path


# -- groups ------------------------------------------------------------------------------------------


@pytest.fixture
async def group_id(gateway: Gateway, sandbox: Sandbox) -> str:
    for user in ("owner", "m1", "m2"):
        sandbox.add_user(user, nickname=user)
    client = await logged_in(gateway, "owner", 5)
    async with client:
        created = await client.call(
            "/im/group/create_group",
            {"memberUserIDs": ["m1", "m2"], "groupInfo": {"groupName": "Club", "groupType": 2}},
        )
    value: str = created["data"]["groupInfo"]["groupID"]
    return value


async def test_list_show_and_list_members_of_groups(gateway: Gateway, group_id: str) -> None:
    status, body, _ = await call(gateway, "GET", "/admin/groups?page=1&size=10&name=Club")
    assert status == 200
    assert body["total"] == 1
    assert body["groups"][0]["groupInfo"]["groupID"] == group_id
    status, body, _ = await call(gateway, "GET", f"/admin/groups/{group_id}")
    assert (status, body["group"]["groupName"]) == (200, "Club")
    status, body, _ = await call(gateway, "GET", f"/admin/groups/{group_id}/members")
    assert {m["userID"] for m in body["members"]} == {"owner", "m1", "m2"}
    assert (await call(gateway, "GET", "/admin/groups/999"))[0] == 404
    assert (await call(gateway, "GET", "/admin/groups?size=1000"))[0] == 400


async def test_kick_and_its_mapped_errors(gateway: Gateway, group_id: str, sandbox: Sandbox) -> None:
    status, body, _ = await call(gateway, "POST", f"/admin/groups/{group_id}/kick", {"userIDs": ["m1"]} | REASON)
    assert (status, body["kicked"]) == (200, ["m1"])
    assert "m1" not in sandbox.members[group_id]
    status, body, _ = await call(gateway, "POST", f"/admin/groups/{group_id}/kick", {"userIDs": ["m1"]} | REASON)
    assert (status, body["errCode"]) == (404, 1101)
    status, body, _ = await call(gateway, "POST", f"/admin/groups/{group_id}/kick", {"userIDs": ["owner"]} | REASON)
    assert (status, body["errCode"]) == (400, 1001)
    status, body, _ = await call(gateway, "POST", "/admin/groups/404/kick", {"userIDs": ["m1"]} | REASON)
    assert (status, body["errCode"]) == (404, 1004)
    status, body, _ = await call(gateway, "POST", f"/admin/groups/{group_id}/kick", {"userIDs": ["m2"]})
    assert (status, body["errCode"]) == (400, 40002), "a reason is required"
    outcomes = [(e["target"], e["outcome"], e["reason"]) for e in await audit_entries(gateway, operation="groups.kick")]
    assert outcomes[-1] == (f"{group_id}:m1", "ok", REASON["reason"])
    assert outcomes[0][1] == "400 errCode 40002"


async def test_dismiss_and_dismissing_again(gateway: Gateway, group_id: str, sandbox: Sandbox) -> None:
    assert (await call(gateway, "POST", f"/admin/groups/{group_id}/dismiss", REASON))[0] == 200
    assert sandbox.groups[group_id]["status"] == 2
    status, body, _ = await call(gateway, "POST", f"/admin/groups/{group_id}/dismiss", REASON)
    assert (status, body["errCode"]) == (409, 1204)
    assert (await call(gateway, "POST", "/admin/groups/404/dismiss", REASON))[0] == 404


async def test_mute_and_unmute_a_group_and_a_member(gateway: Gateway, group_id: str, sandbox: Sandbox) -> None:
    assert (await call(gateway, "POST", f"/admin/groups/{group_id}/mute", REASON))[0] == 200
    assert sandbox.groups[group_id]["status"] == 3
    assert (await call(gateway, "POST", f"/admin/groups/{group_id}/unmute", REASON))[0] == 200
    assert sandbox.groups[group_id]["status"] == 0
    path = f"/admin/groups/{group_id}/members/m2"
    assert (await call(gateway, "POST", path + "/mute", {"seconds": 600} | REASON))[0] == 200
    assert sandbox.members[group_id]["m2"]["muteEndTime"] > 0
    assert (await call(gateway, "POST", path + "/unmute", REASON))[0] == 200
    assert sandbox.members[group_id]["m2"]["muteEndTime"] == 0
    assert (await call(gateway, "POST", path + "/mute", {"seconds": 0} | REASON))[0] == 400
    status, body, _ = await call(
        gateway, "POST", f"/admin/groups/{group_id}/members/ghost/mute", {"seconds": 60} | REASON
    )
    assert (status, body["errCode"]) == (404, 1004)


# -- messages -------------------------------------------------------------------------------------------


@pytest.fixture
async def a_message(gateway: Gateway, sandbox: Sandbox) -> str:
    sandbox.add_user("bob", nickname="bob")
    client = await logged_in(gateway, "alice", 5)
    async with client:
        await client.call(
            "/im/msg/send_msg",
            {"recvID": "bob", "content": {"content": "buy now!!"}, "contentType": 101, "sessionType": 1},
        )
    return "si_alice_bob"


async def test_search_messages_with_filters(gateway: Gateway, a_message: str, fake_clock: FakeClock) -> None:
    status, body, _ = await call(gateway, "GET", "/admin/messages?sendID=alice&sessionType=1&contentType=101")
    assert (status, body["total"]) == (200, 1)
    assert body["messages"][0]["chatLog"]["content"] == '{"content":"buy now!!"}'
    assert (await call(gateway, "GET", "/admin/messages?sendID=bob"))[1]["total"] == 0
    status, body, _ = await call(gateway, "GET", "/admin/messages?date=2025-99-99")
    assert (status, body["errCode"]) == (400, 1001)


async def test_revoke_a_message_and_revoking_again(gateway: Gateway, a_message: str, sandbox: Sandbox) -> None:
    body = {"conversationID": a_message, "seq": 1} | REASON
    assert (await call(gateway, "POST", "/admin/messages/revoke", body))[0] == 200
    assert sandbox.messages[a_message][0]["contentType"] == 2101
    status, reply, _ = await call(gateway, "POST", "/admin/messages/revoke", body)
    assert (status, reply["errCode"]) == (409, 1404)
    status, reply, _ = await call(gateway, "POST", "/admin/messages/revoke", body | {"seq": 7})
    assert (status, reply["errCode"]) == (404, 1004)


async def test_delete_messages_for_everyone(gateway: Gateway, a_message: str, sandbox: Sandbox) -> None:
    body = {"conversationID": a_message, "seqs": [1]} | REASON
    assert (await call(gateway, "POST", "/admin/messages/delete", body))[0] == 200
    assert sandbox.messages[a_message][0].get("deleted") is True
    assert (await call(gateway, "POST", "/admin/messages/delete", body | {"seqs": []}))[0] == 400


async def test_an_unexpected_openim_code_is_502(
    gateway: Gateway, a_message: str, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"errCode": 1602, "errMsg": "ConnArgsErr", "errDlt": ""})

    recorder.overrides["/msg/revoke_msg"] = odd
    with caplog.at_level("WARNING", logger="messenger_gw.errors"):
        status, body, _ = await call(
            gateway, "POST", "/admin/messages/revoke", {"conversationID": a_message, "seq": 1} | REASON
        )
    assert (status, body["errCode"]) == (502, 1602)
    [logged] = [r for r in caplog.records if r.name == "messenger_gw.errors"]
    assert (logged.getMessage(), logged.__dict__["errCode"]) == (
        "OpenIMRefused answered 502: OpenIM refused the operation",
        1602,
    )
    [entry] = await audit_entries(gateway, operation="messages.revoke")
    assert entry["outcome"] == "502 errCode 1602"


# -- users: info and force logout ---------------------------------------------------------------------------


async def test_user_info_shows_the_ban_and_platforms(gateway: Gateway) -> None:
    client = await logged_in(gateway, "dora", 2)
    await client.close()
    status, body, _ = await call(gateway, "GET", "/admin/users/dora")
    assert status == 200
    assert body["user"]["userID"] == "dora"
    assert (body["ban"], body["platformsWithTokens"]) == (None, [2])
    assert (await call(gateway, "GET", "/admin/users/nobody"))[0] == 404
    assert (await call(gateway, "GET", "/admin/users/bad%20id"))[0] == 400


async def test_force_logout_kicks_the_platforms_holding_tokens_and_ends_sessions(
    gateway: Gateway, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    phone, web_client = await logged_in(gateway, "erin", 1), await logged_in(gateway, "erin", 5)
    tokens = sandbox.tokens_of("erin", 1) + sandbox.tokens_of("erin", 5)
    status, body, _ = await call(gateway, "POST", "/admin/users/erin/force-logout", REASON)
    assert status == 200
    assert body == {
        "userID": "erin",
        "sessionsRevoked": 2,
        "forceLogout": {"1": "ok", "5": "ok"},
        "unfinished": [],
        "complete": True,
    }
    assert all(sandbox.tokens[t].state == TokenState.KICKED for t in tokens)
    for client in (phone, web_client):
        assert (await client.request("GET", "/auth/session")).status == 401
        await client.close()
    [entry] = await audit_entries(gateway, operation="users.force_logout")
    assert entry["detail"] == {"forceLogout": {"1": "ok", "5": "ok"}, "sessionsRevoked": 2}


async def test_a_partial_force_logout_is_reported_and_retried(
    gateway: Gateway, sandbox: Sandbox, recorder: Recorder, clean_redis: RedisProcess
) -> None:
    client = await logged_in(gateway, "fred", 1)
    await client.close()
    real = recorder.overrides.get("/auth/force_logout")
    assert real is None

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recorder.overrides["/auth/force_logout"] = down
    status, body, _ = await call(gateway, "POST", "/admin/users/fred/force-logout", {"platforms": [1, 3]} | REASON)
    assert status == 207
    assert body["complete"] is False
    assert body["forceLogout"]["1"].startswith("error")
    with clean_redis.client() as c:
        assert orjson.loads(c.hget(keys.PENDING_FORCE_LOGOUT, "fred") or b"[]") == [1, 3]
    del recorder.overrides["/auth/force_logout"]
    assert await gateway.app[MODERATION].retry_pending() == 0
    with clean_redis.client() as c:
        assert c.hget(keys.PENDING_FORCE_LOGOUT, "fred") is None
    assert all(sandbox.tokens[t].state == TokenState.KICKED for t in sandbox.tokens_of("fred", 1))
    [entry] = await audit_entries(gateway, operation="users.force_logout")
    assert entry["outcome"] == "partial"


# -- ban ------------------------------------------------------------------------------------------------------


async def test_a_ban_through_one_replica_stops_the_user_on_another_within_a_second(
    start_gateway: StartGateway, sandbox: Sandbox
) -> None:
    replica_a, replica_b = await start_gateway(**admin_settings()), await start_gateway(**admin_settings())
    on_b = await logged_in(replica_b, "gina", 2)
    other_device = await logged_in(replica_b, "gina", 7)
    async with on_b, other_device:
        assert (await on_b.call("/im/msg/get_server_time"))["errCode"] == 0  # cached "not banned" on B
        status, body, _ = await call(replica_a, "POST", "/admin/users/gina/ban", REASON)
        assert (status, body["complete"]) == (200, True)
        assert body["forceLogout"] == {str(p): "ok" for p in range(1, 10)}
        started = time.monotonic()
        async with asyncio.timeout(1):
            while True:
                reply = await on_b.request("POST", "/im/msg/get_server_time", {})
                if reply.status != 200:
                    break
                await asyncio.sleep(0.01)
        assert time.monotonic() - started < 1
        assert reply.status in (401, 403), "banned, or the session already revoked"
    async with replica_b.client() as again:
        await again.handshake(platform_id=2)
        refused = await again.request("POST", "/auth/login", {"credentials": {"userID": "gina", "code": GOOD_CODE}})
        assert (refused.status, refused.json()["errCode"]) == (403, 40301)
    for platform in (2, 7):
        assert all(sandbox.tokens[t].state == TokenState.KICKED for t in sandbox.tokens_of("gina", platform))
    assert sandbox.calls["/auth/force_logout"] == 9


async def test_ban_is_idempotent_listed_and_undone_by_unban(gateway: Gateway) -> None:
    for _ in range(2):
        assert (await call(gateway, "POST", "/admin/users/hank/ban", {"expiresInSeconds": 3600} | REASON))[0] == 200
    status, body, _ = await call(gateway, "GET", "/admin/bans")
    assert status == 200
    [ban] = body["bans"]
    assert (ban["userID"], ban["actor"], ban["reason"]) == ("hank", "key:ops", REASON["reason"])
    assert ban["expiresAt"] - ban["at"] == 3600
    status, body, _ = await call(gateway, "DELETE", "/admin/users/hank/ban", REASON)
    assert (status, body["wasBanned"]) == (200, True)
    assert (await call(gateway, "GET", "/admin/bans"))[1]["bans"] == []
    client = await logged_in(gateway, "hank", 5)
    await client.close()
    assert (await call(gateway, "DELETE", "/admin/users/hank/ban", REASON))[1]["wasBanned"] is False


async def test_a_ban_holds_in_the_gateway_even_when_openim_is_down(
    gateway: Gateway, recorder: Recorder, clean_redis: RedisProcess
) -> None:
    client = await logged_in(gateway, "ivan", 5)

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recorder.overrides["/auth/force_logout"] = down
    async with client:
        status, body, _ = await call(gateway, "POST", "/admin/users/ivan/ban", REASON)
        assert (status, body["complete"]) == (207, False)
        assert set(body["forceLogout"].values()) == {"error: OpenIMProtocolError"}
        with clean_redis.client() as c:
            assert c.get(keys.ban("ivan")) is not None
            assert orjson.loads(c.hget(keys.PENDING_FORCE_LOGOUT, "ivan") or b"[]") == list(range(1, 10))
        assert (await client.request("POST", "/im/msg/get_server_time", {})).status in (401, 403)


async def test_ban_checks_its_fields(gateway: Gateway) -> None:
    assert (await call(gateway, "POST", "/admin/users/jo/ban", {}))[0] == 400
    assert (await call(gateway, "POST", "/admin/users/jo/ban", {"expiresInSeconds": 5} | REASON))[0] == 400
    assert (await call(gateway, "POST", "/admin/users/jo/ban", b"not json"))[0] == 400


# -- the audit log ------------------------------------------------------------------------------------------


async def test_audit_entries_carry_the_call_and_page_newest_first(gateway: Gateway) -> None:
    for user in ("u1", "u2", "u3"):
        await call(gateway, "POST", f"/admin/users/{user}/ban", REASON, headers={"X-Request-ID": f"req-{user}"})
    status, body, _ = await call(gateway, "GET", "/admin/audit?operation=users.ban&limit=2")
    assert status == 200
    first_page = body["entries"]
    assert [e["target"] for e in first_page] == ["u3", "u2"]
    entry = first_page[0]
    assert (entry["actor"], entry["outcome"], entry["operationID"]) == ("key:ops", "ok", "req-u3")
    assert entry["reason"] == REASON["reason"]
    assert entry["time"] > 0
    status, body, _ = await call(gateway, "GET", f"/admin/audit?operation=users.ban&limit=2&before={body['next']}")
    assert [e["target"] for e in body["entries"]] == ["u1"]
    assert body["next"] is None
    assert (await call(gateway, "GET", "/admin/audit?before=nonsense"))[0] == 400


async def test_the_audit_stream_is_bounded(gateway: Gateway, clean_redis: RedisProcess) -> None:
    log = AuditLog(gateway.app[AUDIT_LOG]._store, max_entries=1000)
    for index in range(1500):
        await log.append(AuditEntry(operation="test", target=str(index)))
    with clean_redis.client() as c:
        assert 1000 <= c.xlen(AUDIT_STREAM) < 1500


async def test_every_admin_operation_writes_its_audit_record(gateway: Gateway, group_id: str, a_message: str) -> None:
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/admin/groups", None),
        ("GET", f"/admin/groups/{group_id}", None),
        ("GET", f"/admin/groups/{group_id}/members", None),
        ("POST", f"/admin/groups/{group_id}/mute", REASON),
        ("POST", f"/admin/groups/{group_id}/unmute", REASON),
        ("POST", f"/admin/groups/{group_id}/members/m2/mute", {"seconds": 60} | REASON),
        ("POST", f"/admin/groups/{group_id}/members/m2/unmute", REASON),
        ("POST", f"/admin/groups/{group_id}/kick", {"userIDs": ["m1"]} | REASON),
        ("POST", f"/admin/groups/{group_id}/dismiss", REASON),
        ("GET", "/admin/messages", None),
        ("POST", "/admin/messages/revoke", {"conversationID": a_message, "seq": 1} | REASON),
        ("POST", "/admin/messages/delete", {"conversationID": a_message, "seqs": [1]} | REASON),
        ("GET", "/admin/users/alice", None),
        ("POST", "/admin/users/alice/force-logout", REASON),
        ("POST", "/admin/users/alice/ban", REASON),
        ("DELETE", "/admin/users/alice/ban", REASON),
        ("GET", "/admin/bans", None),
        ("GET", "/admin/audit?outcome=nothing", None),  # an audit read is recorded when it is not plain success
    ]
    for method, path, body in calls:
        status, reply, _ = await call(gateway, method, path, body, headers={"X-Request-ID": f"op{len(path)}-{method}"})
        assert status == 200, (path, reply)
    recorded = await audit_entries(gateway, limit="500")
    operations = {e["operation"] for e in recorded}
    assert operations >= {
        "groups.list", "groups.info", "groups.members", "groups.mute", "groups.unmute", "groups.members.mute",
        "groups.members.unmute", "groups.kick", "groups.dismiss", "messages.search", "messages.revoke",
        "messages.delete", "users.info", "users.force_logout", "users.ban", "users.unban", "bans.list",
    }  # fmt: skip
    assert all(e["actor"] == "key:ops" and e["operationID"] for e in recorded)


# -- the store failing mid-call --------------------------------------------------------------------------------


@pytest.fixture
def persistent_redis() -> Iterator[RedisProcess]:
    """A redis-server of the test's own, killed and restarted by it; what it acknowledged survives."""
    server = RedisProcess("--appendonly", "yes", "--appendfsync", "always", "--save", "")
    server.start()
    yield server
    server.remove()


@pytest.fixture
async def gateway_on_persistent_redis(
    sandbox_server: TestServer, persistent_redis: RedisProcess, user_service_url: str
) -> AsyncIterator[Gateway]:
    settings = gateway_settings(
        base_url(sandbox_server), redis_url=persistent_redis.url, USER_SERVICE_URL=user_service_url, **admin_settings()
    )
    server = TestServer(create_app(settings), host=LOOPBACK)
    await server.start_server()
    yield Gateway(server.app, base_url(server))
    await server.close()


def store_dies_at_first_force_logout(redis: RedisProcess, failing_platform: int | None = None) -> Any:
    """OpenIM's /auth/force_logout; the first call kills the store, as a crash between two steps would."""

    killed = False

    async def force_logout(request: web.Request) -> web.Response:
        nonlocal killed
        if not killed:
            redis.stop()
            killed = True
        if (await request.json())["platformID"] == failing_platform:
            return web.Response(status=500)
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": ""})

    return force_logout


async def written_late(gateway: Gateway) -> None:
    """Retry the waiting audit entries until the restarted store has taken them all."""
    async with asyncio.timeout(10):
        while True:
            if not await gateway.app[AUDIT_LOG].retry_waiting():
                return
            await asyncio.sleep(0.05)  # a connection the kill left behind fails once; the next is new


def audit_writes(metrics: Metrics, outcome: str) -> float:
    return sample(metrics, "messenger_gw_audit_writes_total", outcome=outcome)


async def test_a_ban_whose_store_fails_after_it_is_applied_is_answered_as_applied(
    gateway_on_persistent_redis: Gateway, persistent_redis: RedisProcess, recorder: Recorder
) -> None:
    gateway, metrics = gateway_on_persistent_redis, gateway_on_persistent_redis.app[METRICS]
    recorder.overrides["/auth/force_logout"] = store_dies_at_first_force_logout(persistent_redis)
    banned_at = time.time()
    status, body, headers = await call(gateway, "POST", "/admin/users/lena/ban", REASON)
    assert status == 200, body
    assert (body["ban"]["userID"], body["complete"], body["unfinished"]) == ("lena", True, [])
    assert body["forceLogout"] == {str(p): "ok" for p in range(1, 10)}
    assert headers[AUDIT_HEADER] == "queued", "the admin is told its audit entry is late"
    assert (audit_writes(metrics, "queued"), sample(metrics, "messenger_gw_audit_entries_waiting")) == (1, 1)

    persistent_redis.start()
    with persistent_redis.client() as c:
        assert c.get(keys.ban("lena")) is not None, "the ban held"
    await written_late(gateway)
    [entry] = await audit_entries(gateway, operation="users.ban")
    assert (entry["target"], entry["outcome"], entry["actor"]) == ("lena", "ok", "key:ops")
    assert banned_at * 1000 <= entry["time"] <= banned_at * 1000 + 5000, "the time of the call, not of the write"
    assert (audit_writes(metrics, "stored_late"), sample(metrics, "messenger_gw_audit_entries_waiting")) == (1, 0)


async def test_steps_the_store_fails_after_the_ban_are_named_and_the_rest_still_run(
    gateway_on_persistent_redis: Gateway, persistent_redis: RedisProcess, recorder: Recorder, sandbox: Sandbox
) -> None:
    gateway = gateway_on_persistent_redis
    recorder.overrides["/auth/force_logout"] = store_dies_at_first_force_logout(persistent_redis, failing_platform=3)
    status, body, headers = await call(gateway, "POST", "/admin/users/mona/ban", REASON)
    assert status == 207, body
    assert body["complete"] is False
    assert body["unfinished"] == ["forceLogoutRetry"], "platform 3's failure could not be queued for a retry"
    assert body["forceLogout"]["3"].startswith("error")
    assert body["forceLogout"]["9"] == "ok"
    assert len(recorder.to("/auth/force_logout")) == 9, "every platform was still logged out of OpenIM"
    assert headers[AUDIT_HEADER] == "queued"
    persistent_redis.start()
    await written_late(gateway)
    [entry] = await audit_entries(gateway, operation="users.ban")
    assert entry["outcome"] == "partial"
    assert entry["detail"]["unfinished"] == ["forceLogoutRetry"]


async def test_audit_entries_wait_in_a_bounded_queue_and_the_ones_given_up_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisStore.from_url(f"redis://{LOOPBACK}:{free_port()}", timeout=0.5)  # nothing listens there
    metrics = Metrics()
    log = AuditLog(store, max_entries=1000, metrics=metrics, queue_size=3)
    try:
        with caplog.at_level(logging.ERROR, logger="messenger_gw.admin.audit"):
            assert [await log.append(AuditEntry(operation="test", target=f"t{i}")) for i in range(5)] == [False] * 5
            assert log.waiting == 3
            assert (audit_writes(metrics, "queued"), audit_writes(metrics, "dropped")) == (5, 2)
            async with retrying_writes(log, interval=0.05):
                await asyncio.sleep(0.2)  # passes that find the store still down
            assert log.waiting == 0
            assert audit_writes(metrics, "dropped") == 5, "what still waited when the gateway stopped is given up"
    finally:
        await store.close()
    not_stored = [r.getMessage() for r in caplog.records if "queued for a retry" in r.getMessage()]
    assert [f'"target":"t{i}"' in line for i, line in enumerate(not_stored)] == [True] * 5, "every record is logged"
    assert sum("given up" in r.getMessage() for r in caplog.records) == 5


async def test_the_background_retry_writes_what_waited_once_the_store_is_back(persistent_redis: RedisProcess) -> None:
    store = RedisStore.from_url(persistent_redis.url)
    metrics = Metrics()
    log = AuditLog(store, max_entries=1000, metrics=metrics)
    try:
        persistent_redis.stop()
        for target in ("first", "second"):
            assert not await log.append(AuditEntry(operation="test", target=target))
        async with retrying_writes(log, interval=0.05):
            persistent_redis.start()
            async with asyncio.timeout(10):
                while True:
                    await asyncio.sleep(0.05)
                    if not log.waiting:
                        break
        entries = await store.read_range(AUDIT_STREAM, count=10)
        assert [e.fields["target"] for e in entries] == [b"first", b"second"], "oldest first, each once"
        assert (audit_writes(metrics, "stored_late"), audit_writes(metrics, "dropped")) == (2, 0)
    finally:
        await store.close()
