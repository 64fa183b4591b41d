"""The /im chain end to end: gateway -> recording upstream (the sandbox) -> back to the client."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw import keys
from messenger_gw.metrics import METRICS
from messenger_gw.moderation import Ban
from messenger_gw.sandbox import FakeClock, Sandbox, create_sandbox_app
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, LOOPBACK, Gateway, Recorder, RedisProcess, StartGateway, base_url, sample

JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes!!"


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(PHASE="4")


@pytest.fixture
async def alice(gateway: Gateway) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        yield client


async def im(client: GatewayClient, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """POST a signed /im request; (status, JSON body, response headers)."""
    raw = body if isinstance(body, bytes) else orjson.dumps({} if body is None else body)
    plain = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    signed = client.signed_headers("POST", path, raw) | plain | (headers or {})
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.post(client.base_url + path, data=raw, headers=signed) as response,
    ):
        payload = await response.read()
        if response.headers.get("Content-Encoding") == "gzip":
            payload = gzip.decompress(payload)
        return response.status, orjson.loads(payload) if payload else None, response.headers


def stored_token(redis: RedisProcess, user_id: str, platform_id: int) -> str:
    with redis.client() as c:
        raw = c.hget(keys.im_token(user_id), str(platform_id))
    assert raw is not None
    token: str = orjson.loads(raw)["token"]
    return token


# -- header rules, proven at a recording upstream ---------------------------------------------------


async def test_client_credentials_and_hop_by_hop_headers_never_reach_openim(
    alice: GatewayClient, recorder: Recorder, clean_redis: RedisProcess
) -> None:
    extra = {
        "Authorization": "Bearer leaked",
        "Cookie": "session=leaked",
        "X-Platform-ID": "9",
        "token": "client-supplied",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic leaked",
        "X-Forwarded-For": "203.0.113.9",
        "X-App-Version": "7.1",
    }
    status, body, response_headers = await im(alice, "/im/user/get_users_info", {"userIDs": ["alice"]}, extra)
    assert status == 200
    assert body["data"]["usersInfo"][0]["userID"] == "alice"
    [seen] = recorder.to("/user/get_users_info")
    sent = {name.lower(): value for name, value in seen.headers.items()}
    for name in ("authorization", "cookie", "signature", "signature-input", "content-digest", "x-platform-id",
                 "x-hop", "keep-alive", "te", "proxy-authorization"):  # fmt: skip
        assert name not in sent, name
    assert sent.get("connection", "keep-alive").lower() == "keep-alive", "only the gateway's own Connection"
    assert sent["token"] == stored_token(clean_redis, "alice", 5), "the caller's imToken"
    assert sent["operationid"] == response_headers["X-Request-ID"]
    assert sent["x-forwarded-for"] == "127.0.0.1", "an untrusted client's X-Forwarded-For is dropped"
    assert sent["x-app-version"] == "7.1", "other headers pass"
    assert "token" not in {name.lower() for name in response_headers}


async def test_admin_token_only_on_admin_mode_routes(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    await im(alice, "/im/msg/get_server_time")
    message = {"recvID": "alice", "content": {"content": "hi"}, "contentType": 101, "sessionType": 1}
    status, body, _ = await im(alice, "/im/msg/send_msg", message)
    assert (status, body["errCode"]) == (200, 0)
    [user_call] = recorder.to("/msg/get_server_time")
    [admin_call] = recorder.to("/msg/send_msg")
    assert sandbox.verify_token(user_call.headers["token"])[0].user_id == "alice"
    assert sandbox.verify_token(admin_call.headers["token"])[0].is_admin


async def test_gzip_from_openim_reaches_the_client_decodable(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    for index in range(40):
        sandbox.add_user(f"user{index}", nickname=f"User number {index}")
    ids = [f"user{index}" for index in range(40)]
    status, body, headers = await im(alice, "/im/user/get_users_info", {"userIDs": ids}, {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert len(body["data"]["usersInfo"]) == 40
    assert "gzip" in recorder.to("/user/get_users_info")[0].headers["Accept-Encoding"]
    _, plain, plain_headers = await im(alice, "/im/user/get_users_info", {"userIDs": ids})
    assert "Content-Encoding" not in plain_headers
    assert plain == body


async def test_large_answers_are_streamed_intact(alice: GatewayClient, sandbox: Sandbox) -> None:
    for index in range(400):
        sandbox.add_user(f"member{index}", nickname="n" * 200)
    ids = [f"member{index}" for index in range(400)]
    status, body, _ = await im(alice, "/im/user/get_users_info", {"userIDs": ids})
    assert status == 200
    assert len(body["data"]["usersInfo"]) == 400


async def test_a_body_over_the_limit_is_413(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(MAX_BODY_BYTES="2048")
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        status, body, _ = await im(client, "/im/user/get_users_info", {"userIDs": ["x" * 4000]})
    assert (status, body["errCode"]) == (413, 41300)


# -- route policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/im/msg/search_msg", "/im/group/get_groups", "/im/auth/get_user_token", "/im/user/user_register",
     "/im/auth/force_logout", "/im/msg/delete_msg_physical", "/im/no/such_route"],
)  # fmt: skip
async def test_routes_outside_the_table_are_404_and_never_forwarded(
    alice: GatewayClient, recorder: Recorder, path: str
) -> None:
    before = len(recorder.requests)
    status, body, _ = await im(alice, path, {})
    assert (status, body["errCode"]) == (404, 40400)
    assert len(recorder.requests) == before


async def test_routes_of_a_later_phase_are_404(start_gateway: StartGateway, recorder: Recorder) -> None:
    gateway = await start_gateway(PHASE="1")
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        assert (await im(client, "/im/user/get_self_user_info"))[0] == 200
        status, body, _ = await im(client, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (404, 40400)
    assert recorder.to("/msg/get_server_time") == []


TEXT_TO_ALICE = {"recvID": "alice", "content": {"content": "x"}, "contentType": 101, "sessionType": 1}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/im/msg/send_msg", TEXT_TO_ALICE | {"sendID": "bob"}),
        ("/im/msg/send_msg", TEXT_TO_ALICE | {"senderPlatformID": 1}),
        ("/im/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": []}),
        ("/im/user/update_user_info_ex", {"userInfo": {"userID": "bob", "nickname": "pwned"}}),
        ("/im/group/create_group", {"ownerUserID": "bob", "groupInfo": {"groupType": 2}}),
        (
            "/im/conversation/set_conversations",
            {"userIDs": ["alice", "bob"], "conversation": {"conversationID": "si_alice_bob"}},
        ),
    ],
)
async def test_a_bound_field_naming_another_user_is_403_and_never_forwarded(
    alice: GatewayClient, recorder: Recorder, path: str, body: dict[str, Any]
) -> None:
    before = len(recorder.requests)
    status, reply, _ = await im(alice, path, body)
    assert (status, reply["errCode"]) == (403, 40303)
    assert len(recorder.requests) == before


async def test_a_member_cannot_erase_another_members_group_message_for_everyone(
    gateway: Gateway, alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    async with gateway.client() as bob:  # bob owns the group, alice is a plain member
        await bob.handshake(platform_id=5)
        await bob.login({"userID": "bob", "code": GOOD_CODE})
        created = await bob.call("/im/group/create_group", {"memberUserIDs": ["alice"], "groupInfo": {"groupType": 2}})
        group_id = created["data"]["groupInfo"]["groupID"]
        text = {"content": {"content": "mine"}, "contentType": 101, "sessionType": 3}
        await bob.call("/im/msg/send_msg", text | {"groupID": group_id})
    conversation = f"sg_{group_id}"
    [message] = [m for m in sandbox.messages[conversation] if m["contentType"] == 101]
    erase = {"conversationID": conversation, "seqs": [message["seq"]]}
    for options in (
        {"deleteSyncOpt": {"IsSyncOther": True}},
        {"deleteSyncOpt": {"isSyncOther": True, "IsSyncSelf": True}},
        {"DeleteSyncOpt": {"ISSYNCOTHER": True}},
        {"deletesyncopt": {"I\u017fSyncOther": True}},  # the long s, which Go's decoder folds to s
    ):
        status, reply, _ = await im(alice, "/im/msg/delete_msgs", erase | options)
        assert (status, reply["errCode"]) == (403, 40305), options
    assert recorder.to("/msg/delete_msgs") == []
    assert not message.get("deleted")
    mine_only = erase | {"deleteSyncOpt": {"IsSyncSelf": True, "IsSyncOther": False}}
    status, reply, _ = await im(alice, "/im/msg/delete_msgs", mine_only)
    assert (status, reply["errCode"]) == (200, 0)
    assert not message.get("deleted"), "still there for bob"
    assert ("alice", conversation, message["seq"]) in sandbox.hidden


@pytest.mark.parametrize("path", ["/msg/clear_conversation_msg", "/msg/user_clear_all_msg"])
async def test_clearing_history_for_every_party_is_refused_and_for_oneself_forwarded(
    alice: GatewayClient, recorder: Recorder, path: str
) -> None:
    async def cleared(request: web.Request) -> web.Response:  # the sandbox lacks these routes
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": ""})

    recorder.overrides[path] = cleared
    own = {"conversationIDs": ["si_alice_bob"]}
    for options in ({"IsSyncOther": True}, {"issyncother": True, "IsSyncSelf": True}):
        status, reply, _ = await im(alice, "/im" + path, own | {"deleteSyncOpt": options})
        assert (status, reply["errCode"]) == (403, 40305), options
    assert recorder.to(path) == []
    status, reply, _ = await im(alice, "/im" + path, own | {"deleteSyncOpt": {"IsSyncSelf": True}})
    assert (status, reply["errCode"]) == (200, 0)
    [sent] = recorder.to(path)
    assert sent.json()["userID"] == "alice"
    status, reply, _ = await im(alice, "/im" + path, {"userID": "bob"})
    assert (status, reply["errCode"]) == (403, 40303)


async def test_clearing_another_users_conversation_is_refused(alice: GatewayClient, recorder: Recorder) -> None:
    body = {"conversationIDs": ["si_alice_bob", "si_bob_carol"]}
    status, reply, _ = await im(alice, "/im/msg/clear_conversation_msg", body)
    assert (status, reply["errCode"]) == (403, 40304)
    assert recorder.to("/msg/clear_conversation_msg") == []


async def test_set_conversations_writes_no_conversation_but_the_callers_and_the_peers(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    sandbox.add_user("bob", nickname="Bob")
    sandbox.add_user("carol", nickname="Carol")
    private = {"conversationID": "si_alice_bob", "conversationType": 1, "isPrivateChat": True}
    for third in ({"userID": "carol"}, {"UserID": "carol"}, {"userID": "alice"}):
        body = {"userIDs": ["alice"], "conversation": private | third}
        status, reply, _ = await im(alice, "/im/conversation/set_conversations", body)
        assert (status, reply["errCode"]) == (403, 40305), third
    group = {"conversationID": "sg_team", "conversationType": 3, "groupID": "team", "userID": "carol"}
    status, reply, _ = await im(alice, "/im/conversation/set_conversations", {"conversation": group})
    assert (status, reply["errCode"]) == (403, 40305)
    assert recorder.to("/conversation/set_conversations") == []
    body = {"userIDs": ["alice"], "conversation": private | {"userID": "bob"}}
    status, reply, _ = await im(alice, "/im/conversation/set_conversations", body)
    assert (status, reply["errCode"]) == (200, 0)
    [sent] = recorder.to("/conversation/set_conversations")
    assert sent.json()["conversation"]["userID"] == "bob"


@pytest.mark.parametrize(
    ("path", "raw", "hidden"),
    [
        (
            "/msg/delete_msgs",
            b'{"userID":"alice","conversationID":"si_alice_bob","seqs":[1],'
            b'"deleteSyncOpt":{"IsSyncOther":true},"deleteSyncOpt":{"IsSyncSelf":true}}',
            b"IsSyncOther",
        ),
        (
            "/conversation/set_conversations",
            b'{"userIDs":["alice"],"conversation":{"conversationID":"si_alice_bob","userID":"carol",'
            b'"isPrivateChat":true},"conversation":{"conversationID":"si_alice_bob"}}',
            b"carol",
        ),
    ],
)
async def test_an_object_given_twice_reaches_openim_as_the_rules_read_it(
    alice: GatewayClient, recorder: Recorder, path: str, raw: bytes, hidden: bytes
) -> None:
    # Go's decoder merges the two objects into one; the rules, like orjson, read the last alone.
    await alice.request("POST", "/im" + path, raw)
    [sent] = recorder.to(path)
    assert hidden not in sent.body
    assert sent.json() == orjson.loads(raw)


async def test_keys_differing_only_in_case_are_refused(alice: GatewayClient, recorder: Recorder) -> None:
    before = len(recorder.requests)
    status, reply, _ = await im(alice, "/im/msg/pull_msg_by_seq", {"userID": "alice", "UserID": "bob", "seqRanges": []})
    assert (status, reply["errCode"]) == (400, 40002)
    status, reply, _ = await im(alice, "/im/msg/pull_msg_by_seq", {"USERID": "bob", "seqRanges": []})
    assert (status, reply["errCode"]) == (403, 40303), "a case variant is still the bound field"
    assert len(recorder.requests) == before


async def test_absent_identity_fields_are_filled_with_the_caller(alice: GatewayClient, recorder: Recorder) -> None:
    message = {
        "recvID": "alice",
        "content": {"content": "x"},
        "contentType": 101,
        "sessionType": 1,
        "senderNickname": "Mallory",
    }
    assert (await im(alice, "/im/msg/send_msg", message))[0] == 200
    sent = recorder.to("/msg/send_msg")[0].json()
    assert sent["sendID"] == "alice"
    assert sent["senderPlatformID"] == 5
    assert "senderNickname" not in sent
    await im(alice, "/im/msg/pull_msg_by_seq", {"seqRanges": []})
    assert recorder.to("/msg/pull_msg_by_seq")[0].json()["userID"] == "alice"


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [({"contentType": 111}, 403, 40305), ({"contentType": 1400}, 403, 40305), ({"sessionType": 2}, 403, 40305),
     ({"sessionType": 4}, 403, 40305), ({"contentType": None}, 400, 40002)],
)  # fmt: skip
async def test_send_msg_allows_only_user_content_and_sessions(
    alice: GatewayClient, recorder: Recorder, changes: dict[str, Any], status: int, code: int
) -> None:
    message = {"recvID": "alice", "content": {"content": "x"}, "contentType": 101, "sessionType": 1} | changes
    reply_status, reply, _ = await im(alice, "/im/msg/send_msg", {k: v for k, v in message.items() if v is not None})
    assert (reply_status, reply["errCode"]) == (status, code)
    assert recorder.to("/msg/send_msg") == []


async def test_pull_msg_by_seq_refuses_other_users_conversations(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    sandbox.add_user("bob", nickname="Bob")
    sandbox.add_user("carol", nickname="Carol")
    for conversation_id in ("si_bob_carol", "sg_123", "x_anything", "n_si_bob_carol"):
        body = {"seqRanges": [{"conversationID": conversation_id, "begin": 1, "end": 10, "num": 10}]}
        status, reply, _ = await im(alice, "/im/msg/pull_msg_by_seq", body)
        assert (status, reply["errCode"]) == (403, 40304), conversation_id
    assert recorder.to("/msg/pull_msg_by_seq") == []
    own = {"seqRanges": [{"conversationID": "si_alice_bob", "begin": 1, "end": 10, "num": 10}]}
    assert (await im(alice, "/im/msg/pull_msg_by_seq", own))[0] == 200


async def test_the_has_read_route_refuses_other_users_conversations(alice: GatewayClient, recorder: Recorder) -> None:
    body = {"conversationIDs": ["si_alice_bob", "si_bob_carol"]}
    status, reply, _ = await im(alice, "/im/msg/get_conversations_has_read_and_max_seq", body)
    assert (status, reply["errCode"]) == (403, 40304)
    assert recorder.to("/msg/get_conversations_has_read_and_max_seq") == []
    assert (await im(alice, "/im/msg/get_conversations_has_read_and_max_seq", {"conversationIDs": []}))[0] == 200


async def test_group_conversations_need_membership(alice: GatewayClient, sandbox: Sandbox) -> None:
    sandbox.add_user("bob", nickname="Bob")
    status, created, _ = await im(
        alice, "/im/group/create_group", {"memberUserIDs": ["bob"], "groupInfo": {"groupType": 2}}
    )
    assert status == 200
    mine = created["data"]["groupInfo"]["groupID"]
    body = {"seqRanges": [{"conversationID": f"sg_{mine}", "begin": 1, "end": 5, "num": 5}]}
    assert (await im(alice, "/im/msg/pull_msg_by_seq", body))[0] == 200
    assert (
        await im(
            alice,
            "/im/group/get_group_member_list",
            {"groupID": mine, "pagination": {"pageNumber": 1, "showNumber": 10}},
        )
    )[0] == 200
    sandbox.add_user("dave", nickname="Dave")
    other = sandbox.new_group_id()
    sandbox.groups[other] = dict(sandbox.groups[mine], groupID=other, ownerUserID="dave")
    sandbox.members[other] = {}
    status, reply, _ = await im(
        alice, "/im/group/get_group_member_list", {"groupID": other, "pagination": {"pageNumber": 1, "showNumber": 10}}
    )
    assert (status, reply["errCode"]) == (403, 40304)


@pytest.mark.parametrize("group_id", ["", "no-such-group"])
async def test_a_group_that_openim_does_not_know_is_refused_as_not_the_callers(
    alice: GatewayClient, recorder: Recorder, group_id: str
) -> None:
    body = {"groupID": group_id, "pagination": {"pageNumber": 1, "showNumber": 10}}
    status, reply, _ = await im(alice, "/im/group/get_group_member_list", body)
    assert (status, reply["errCode"]) == (403, 40304)
    assert recorder.to("/group/get_group_member_list") == []


async def test_user_ids_with_underscores_are_resolved_without_guessing(
    start_gateway: StartGateway, sandbox: Sandbox
) -> None:
    gateway = await start_gateway(PHASE="4")
    for user in ("a_b", "c", "a", "b_c"):
        sandbox.add_user(user, nickname=user)
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "a", "code": GOOD_CODE})
        ambiguous = {"seqRanges": [{"conversationID": "si_a_b_c", "begin": 1, "end": 5, "num": 5}]}
        status, reply, _ = await im(client, "/im/msg/pull_msg_by_seq", ambiguous)
        assert (status, reply["errCode"]) == (403, 40304), "si_a_b_c may be a_b with c"
        del sandbox.users["a_b"]  # now only (a, b_c) can be meant ... but the answer is cached for a while
    gateway2 = await start_gateway(PHASE="4")
    async with gateway2.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "a", "code": GOOD_CODE})
        assert (await im(client, "/im/msg/pull_msg_by_seq", ambiguous))[0] == 200


async def test_get_self_user_info_answers_for_the_caller(alice: GatewayClient, recorder: Recorder) -> None:
    status, body, _ = await im(alice, "/im/user/get_self_user_info", {"userID": "someone_else"})
    assert status == 200
    assert body["data"]["userID"] == "alice"
    assert recorder.to("/user/get_users_info")[0].json() == {"userIDs": ["alice"]}


async def test_anonymous_sessions_and_banned_users_are_stopped(
    gateway: Gateway, alice: GatewayClient, clean_redis: RedisProcess, recorder: Recorder
) -> None:
    async with gateway.client() as anonymous:
        await anonymous.handshake(platform_id=5)
        status, body, _ = await im(anonymous, "/im/msg/get_server_time")
        assert (status, body["errCode"]) == (401, 40100)
        assert sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason="not_logged_in") == 1
    with clean_redis.client() as c:
        c.set(keys.ban("alice"), Ban("alice", "spam", "t", 0, None).encode())
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert status == 200, "the ban answer is cached until an invalidation says otherwise"
    from messenger_gw.moderation.bans import INVALIDATION_KIND
    from messenger_gw.store import INVALIDATION

    await gateway.app[INVALIDATION].publish(INVALIDATION_KIND, "alice")
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (403, 40301)


# -- token-error recovery ---------------------------------------------------------------------------------


async def test_a_kicked_token_is_replaced_and_the_request_succeeds_once(
    gateway: Gateway,
    alice: GatewayClient,
    sandbox: Sandbox,
    recorder: Recorder,
    clean_redis: RedisProcess,
    fake_clock: FakeClock,
) -> None:
    old = stored_token(clean_redis, "alice", 5)
    sandbox.kick("alice", 5)
    fake_clock.advance(1)
    mints = sandbox.calls["/auth/get_user_token"]
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (200, 0)
    assert sandbox.calls["/auth/get_user_token"] == mints + 1
    assert len(recorder.to("/msg/get_server_time")) == 2, "one failure, one replay"
    new = stored_token(clean_redis, "alice", 5)
    assert new != old
    assert sample(gateway.app[METRICS], "messenger_gw_im_token_recoveries_total", outcome="recovered") == 1


async def test_an_expired_token_is_replaced(alice: GatewayClient, fake_clock: FakeClock) -> None:
    fake_clock.advance(91 * 86400)
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (200, 0)


async def test_a_token_that_keeps_failing_is_401_with_openims_code(alice: GatewayClient, recorder: Recorder) -> None:
    async def kicked(request: web.Request) -> web.Response:
        return web.json_response({"errCode": 1506, "errMsg": "TokenKickedError", "errDlt": "TokenKickedError"})

    recorder.overrides["/msg/get_server_time"] = kicked
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert status == 401
    assert body == {"errCode": 1506, "errMsg": "TokenKickedError", "errDlt": ""}
    assert len(recorder.to("/msg/get_server_time")) == 2


async def test_a_hundred_concurrent_requests_on_a_cold_cache_mint_once(
    start_gateway: StartGateway, sandbox: Sandbox, recorder: Recorder
) -> None:
    gateway = await start_gateway(PHASE="4", JWT_HS256_SECRET=JWT_SECRET)
    sandbox.add_user("zoe", nickname="Zoe")
    token = jwt.encode({"sub": "zoe", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}", "X-Platform-ID": "2", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:

        async def one() -> int:
            async with http.post(gateway.url + "/im/msg/get_server_time", data=b"{}", headers=headers) as response:
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(100)))
    assert statuses == [200] * 100
    assert sandbox.calls["/auth/get_user_token"] == 1


# -- upstream failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(text="<html>oops</html>", content_type="text/html"),
        web.Response(status=500),
        web.Response(status=404, text="404 page not found"),
        web.Response(text='{"no":"envelope"}', content_type="application/json"),
    ],
)
async def test_garbage_from_openim_is_502_with_the_envelope(
    gateway: Gateway, alice: GatewayClient, recorder: Recorder, answer: web.Response
) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    recorder.overrides["/msg/get_server_time"] = garbage
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (502, 50200)
    assert set(body) == {"errCode", "errMsg", "errDlt"}
    route = "/msg/get_server_time"
    assert sample(gateway.app[METRICS], "messenger_gw_openim_errors_total", route=route, kind="protocol") == 1
    assert sample(gateway.app[METRICS], "messenger_gw_openim_errors_total", route=route, kind="connect") == 0


async def test_the_pool_of_connections_to_openim_is_exported(gateway: Gateway, alice: GatewayClient) -> None:
    status, _, _ = await im(alice, "/im/msg/get_server_time")
    assert status == 200
    metrics = gateway.app[METRICS]
    open_ = sample(metrics, "messenger_gw_openim_connections", state="open")
    assert open_ >= 1
    assert sample(metrics, "messenger_gw_openim_connections", state="idle") == open_  # every call is done
    assert sample(metrics, "messenger_gw_openim_connections", state="waiting") == 0


async def test_openim_internals_are_scrubbed_from_errors(
    gateway: Gateway, alice: GatewayClient, recorder: Recorder
) -> None:
    async def leaky(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "errCode": 1001,
                "errMsg": "json: cannot unmarshal\ngoroutine 1 [running]:\nmain.go:42",
                "errDlt": "token=eyJsecret",
            }
        )

    recorder.overrides["/msg/get_server_time"] = leaky
    status, body, _ = await im(alice, "/im/msg/get_server_time")
    assert status == 200
    assert body == {"errCode": 1001, "errMsg": "json: cannot unmarshal", "errDlt": ""}
    assert (
        sample(gateway.app[METRICS], "messenger_gw_openim_errcodes_total", route="/msg/get_server_time", code="1001")
        == 1
    )


async def test_slow_openim_is_504_within_the_timeout(start_gateway: StartGateway, recorder: Recorder) -> None:
    gateway = await start_gateway(
        PHASE="4",
        OPENIM_CONNECT_TIMEOUT="0.2",
        OPENIM_POOL_TIMEOUT="0.2",
        OPENIM_READ_TIMEOUT="0.3",
        OPENIM_TOTAL_TIMEOUT="1",
    )
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"errCode": 0})

    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        recorder.overrides["/msg/get_server_time"] = stall
        started = time.monotonic()
        try:
            async with asyncio.timeout(5):
                status, body, _ = await im(client, "/im/msg/get_server_time")
        finally:
            release.set()
    assert 0.3 <= time.monotonic() - started < 0.9  # the read deadline, not the total, and no later
    assert (status, body["errCode"]) == (504, 50400)
    route = "/msg/get_server_time"
    assert sample(gateway.app[METRICS], "messenger_gw_openim_errors_total", route=route, kind="timeout") == 1


async def test_an_answer_that_keeps_arriving_outlives_the_read_timeout(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(PHASE="4", OPENIM_READ_TIMEOUT="0.3", OPENIM_TOTAL_TIMEOUT="4")
    chunk = b" " * 40_000  # JSON whitespace: with the envelope, over the 64 KiB peek, so streamed

    async def dripping(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        await response.write(b'{"errCode":0,"errMsg":"","errDlt":"","data":{"serverTime":1}')
        for _ in range(4):  # 0.8 s in all, never 0.3 s without a byte
            await asyncio.sleep(0.2)
            await response.write(chunk)
        await response.write(b"}")
        await response.write_eof()
        return response

    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        recorder.overrides["/msg/get_server_time"] = dripping
        status, body, _ = await im(client, "/im/msg/get_server_time")
    assert (status, body["data"]) == (200, {"serverTime": 1})


async def test_openim_down_is_502(start_gateway: StartGateway, sandbox: Sandbox, clean_redis: RedisProcess) -> None:
    own_openim = TestServer(create_sandbox_app(sandbox), host=LOOPBACK)
    await own_openim.start_server()
    gateway = await start_gateway(PHASE="4", OPENIM_API_URL=base_url(own_openim))
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        await own_openim.close()
        status, body, _ = await im(client, "/im/msg/get_server_time")
    assert (status, body["errCode"]) == (502, 50200)
    route = "/msg/get_server_time"
    assert sample(gateway.app[METRICS], "messenger_gw_openim_errors_total", route=route, kind="connect") == 1
