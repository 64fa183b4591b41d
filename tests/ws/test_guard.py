"""The WebSocket guard against the sandbox's msg-gateway, which keeps OpenIM v3.8.3's holes: the upgrade answered as
OpenIM answers it, every request frame checked before OpenIM sees it, and the sockets the gateway ends itself."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from messenger_gw import keys
from messenger_gw.app import create_app
from messenger_gw.edge import DRAINING
from messenger_gw.metrics import METRICS
from messenger_gw.protocol import msg_pb2, sdkws_pb2
from messenger_gw.sandbox import FakeClock, Sandbox, TokenState
from messenger_gw.ws import REASONS
from tests.conftest import (
    LOOPBACK,
    Gateway,
    Recorder,
    RedisProcess,
    Wire,
    base_url,
    free_port,
    gateway_settings,
    sample,
)
from tests.ws.conftest import (
    ADMIN_KEY,
    Connect,
    Login,
    Received,
    StartGuarded,
    data_of,
    log_in,
    text_message,
    ws_address,
)

BLOCK = 20777


async def admin(gateway: Gateway, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "/admin" + path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as reply,
    ):
        return reply.status, await reply.json()


async def plain_answer(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> tuple[int, str, Any]:
    """An upgrade answered without upgrading: status, content type, body."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
    }
    async with http.get(url, params=params, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.json(content_type=None)


def own(user_id: str) -> bytes:
    return msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID=user_id).SerializeToString()


# -- the upgrade ----------------------------------------------------------------------------------------


async def test_a_valid_imtoken_gets_openims_handshake_answer_its_answers_and_its_pongs(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    reply = await alice.request(1006, own("alice"))
    assert reply == {
        "reqIdentifier": 1006,
        "msgIncr": "incr-1",
        "operationID": "op-1",
        "errCode": 0,
        "errMsg": "",
        "data": "",
    }
    await alice.ws.send_str('{"type":"ping"}')
    pong = await alice.ws.receive(timeout=5)
    assert (pong.type, pong.data) == (WSMsgType.TEXT, '{"type":"pong","body":null}'), "OpenIM's pong, relayed"
    assert received.identifiers("alice") == [1006]
    assert received.upgrades == 1


@pytest.mark.parametrize(
    ("token", "msg_resp", "code", "name"),
    [
        ("not-a-jwt", True, 1503, "TokenMalformedError"),
        ("not-a-jwt", False, 1503, "TokenMalformedError"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJVc2VySUQiOiJhbGljZSJ9.c2lnbmF0dXJl", True, 1505, "TokenUnknownError"),
    ],
)
async def test_a_refused_token_is_answered_as_openim_answers_it_and_openim_is_never_dialled(
    guarded: Gateway,
    connect: Connect,
    http: aiohttp.ClientSession,
    received: Received,
    token: str,
    msg_resp: bool,
    code: int,
    name: str,
) -> None:
    login = await log_in(guarded, "alice")
    params = login.query(token=token, isMsgResp="true" if msg_resp else "false")
    if msg_resp:  # the upgrade, the envelope as a text frame, then the TCP connection dropped
        ws = await http.ws_connect(ws_address(guarded), params=params)
        first = await ws.receive(timeout=5)
        assert first.type == WSMsgType.TEXT
        assert orjson.loads(first.data) == {"errCode": code, "errMsg": name, "errDlt": ""}
        closed = await ws.receive(timeout=5)
        assert closed.type in (WSMsgType.CLOSED, WSMsgType.ERROR)
        assert ws.close_code != 1000, "no close frame: OpenIM's conn.Close()"
    else:  # plain HTTP 200 with the envelope, no upgrade
        status, content_type, body = await plain_answer(http, ws_address(guarded), params)
        assert (status, content_type) == (200, "application/json; charset=utf-8")
        assert body == {"errCode": code, "errMsg": name, "errDlt": ""}
    assert received.upgrades == 0


async def test_a_token_of_another_user_or_platform_is_1502_over_plain_http(
    guarded: Gateway, http: aiohttp.ClientSession, received: Received
) -> None:
    alice = await log_in(guarded, "alice")
    for params in (alice.query(sendID="bob"), alice.query(platformID="2")):
        status, _, body = await plain_answer(http, ws_address(guarded), params)
        assert (status, body) == (200, {"errCode": 1502, "errMsg": "TokenInvalidError", "errDlt": ""})
    assert received.upgrades == 0


@pytest.mark.parametrize(
    "change",
    [
        {"token": ""},
        {"sendID": ""},
        {"platformID": ""},
        {"platformID": "web"},
        {"sdkType": "swift"},
        {"sdkType": "go"},
        {"sdkType": ""},
    ],
)
async def test_missing_or_bad_arguments_and_frames_the_guard_cannot_read_are_1602(
    guarded: Gateway, http: aiohttp.ClientSession, received: Received, change: dict[str, str]
) -> None:
    login = await log_in(guarded, "alice")
    status, _, body = await plain_answer(http, ws_address(guarded), login.query(**change))
    assert (status, body) == (
        200,
        {"errCode": 1602, "errMsg": "args err, need token, sendID, platformID", "errDlt": ""},
    )
    assert received.upgrades == 0


async def test_the_connections_per_worker_and_per_user_are_bounded_with_1601(
    start_guarded: StartGuarded, connect: Connect, http: aiohttp.ClientSession
) -> None:
    one = await start_guarded(WS_MAX_CONNECTIONS="1")
    held = [await connect(ws_address(one), await log_in(one, "alice"))]
    status, _, body = await plain_answer(http, ws_address(one), (await log_in(one, "bob")).query())
    assert (status, body) == (200, {"errCode": 1601, "errMsg": "ConnOverMaxNumLimit", "errDlt": ""})
    per_user = await start_guarded(WS_MAX_CONNECTIONS_PER_USER="1")
    held.append(await connect(ws_address(per_user), await log_in(per_user, "carol", 5)))
    status, _, body = await plain_answer(http, ws_address(per_user), (await log_in(per_user, "carol", 2)).query())
    assert body["errCode"] == 1601
    await connect(ws_address(per_user), await log_in(per_user, "dave", 5))  # others are not held back


async def test_upgrades_at_once_from_one_user_do_not_pass_the_per_user_bound_together(
    start_guarded: StartGuarded, http: aiohttp.ClientSession, received: Received
) -> None:
    gateway = await start_guarded(WS_MAX_CONNECTIONS_PER_USER="2")
    logins = [await log_in(gateway, "erin", platform) for platform in (2, 3, 5, 6)]
    sockets = await asyncio.gather(
        *(http.ws_connect(ws_address(gateway), params=login.query()) for login in logins), return_exceptions=True
    )
    try:
        upgraded = [ws for ws in sockets if isinstance(ws, aiohttp.ClientWebSocketResponse)]
        assert len(upgraded) == 2, sockets
        assert received.upgrades == 2
    finally:
        for ws in sockets:
            if isinstance(ws, aiohttp.ClientWebSocketResponse):
                await ws.close()


async def issued(wire: Wire, redis: RedisProcess, users: list[str]) -> list[Login]:
    """imTokens as a login leaves them (minted by OpenIM, stored in im:token:<userID>), many at once."""
    admin_token = await wire.admin_token()
    await wire.register(admin_token, *users)
    logins = []
    with redis.client() as c:
        for user in users:
            token = await wire.user_token(admin_token, user, 5)
            c.hset(keys.im_token(user), "5", orjson.dumps({"token": token, "expiresAt": int(time.time()) + 86400}))
            logins.append(Login(user, token, 5))
    return logins


async def test_a_burst_of_upgrades_is_admitted_a_bounded_number_at_a_time_and_none_is_refused(
    guarded: Gateway, clean_redis: RedisProcess, wire: Wire
) -> None:
    """As after a replica's drain, when its clients all reconnect at once: more upgrades than the store's
    connection pool holds (200) verify their tokens together."""
    logins = await issued(wire, clean_redis, [f"burst{n}" for n in range(400)])

    async def upgrade(http: aiohttp.ClientSession, login: Login) -> Any:
        ws = await http.ws_connect(ws_address(guarded), params=login.query())
        hello = await ws.receive(timeout=30)
        return ws, orjson.loads(hello.data)["errCode"]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        opened = await asyncio.gather(*(upgrade(http, login) for login in logins), return_exceptions=True)
        failures = [o for o in opened if isinstance(o, BaseException)]
        assert failures == []
        assert {code for _, code in opened} == {0}  # type: ignore[misc]


async def test_openims_own_refusal_reaches_the_client_as_openim_sent_it(
    guarded: Gateway, sandbox: Sandbox, http: aiohttp.ClientSession, ws_url: str
) -> None:
    login = await log_in(guarded, "alice")
    sandbox.tokens[login.token].state = TokenState.KICKED  # OpenIM knows what the gateway does not
    params = login.query(isMsgResp="false")
    direct = await plain_answer(http, ws_url, params)
    assert direct[2]["errCode"] == 1506
    assert await plain_answer(http, ws_address(guarded), params) == direct
    ws = await http.ws_connect(ws_address(guarded), params=login.query())
    first = await ws.receive(timeout=5)
    assert orjson.loads(first.data)["errCode"] == 1506, "OpenIM's text frame, relayed"
    assert (await ws.receive(timeout=5)).type in (WSMsgType.CLOSED, WSMsgType.ERROR)


async def test_an_unreachable_msg_gateway_is_the_gateways_502(
    start_guarded: StartGuarded, http: aiohttp.ClientSession
) -> None:
    gateway = await start_guarded(OPENIM_WS_URL_INTERNAL=f"ws://{LOOPBACK}:{free_port()}")
    async with http.get(ws_address(gateway), params=(await log_in(gateway, "alice")).query()) as response:
        assert response.status == 502
        assert (await response.json())["errCode"] == 50200


# -- frames ---------------------------------------------------------------------------------------------


async def test_a_message_is_relayed_byte_for_byte_answered_and_pushed_to_both_parties(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    bob = await connect(ws_address(guarded), await log_in(guarded, "bob"))
    message = text_message("alice", "bob", "hi bob")
    reply = await alice.request(1003, message, op="op-send")
    sent = msg_pb2.SendMsgResp.FromString(data_of(reply))
    for socket in (bob, alice):
        push = await socket.push()
        assert (push["reqIdentifier"], push["operationID"]) == (2001, "op-send")
        [entry] = sdkws_pb2.PushMessages.FromString(base64.b64decode(push["data"])).msgs.values()
        assert entry.Msgs[0].serverMsgID == sent.serverMsgID
    [frame] = received.of("alice")
    expected = {
        "reqIdentifier": 1003,
        "msgIncr": "incr-1",
        "sendID": "alice",
        "operationID": "op-send",
        "data": base64.b64encode(message).decode(),
    }
    assert frame == expected
    assert received.frames[0][1] == orjson.dumps(expected), "relayed as the client wrote it"


async def test_a_frame_in_another_spelling_reaches_openim_as_the_guard_read_it(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    data = base64.b64encode(own("alice")).decode()
    await alice.ws.send_bytes(
        orjson.dumps(
            {"REQIDENTIFIER": 1006, "MsgIncr": "x1", "sendid": "alice", "operationId": "o", "Data": data, "extra": [1]}
        )
    )
    assert (await alice.answer("x1"))["errCode"] == 0
    assert received.frames[-1][1] == orjson.dumps(
        {"reqIdentifier": 1006, "token": "", "sendID": "alice", "operationID": "o", "msgIncr": "x1", "data": data}
    )
    # Go's decoder takes the last of two spellings of a name: so does the guard, and then refuses it.
    await alice.ws.send_bytes(
        orjson.dumps(
            {
                "reqIdentifier": 1006,
                "msgIncr": "x2",
                "sendID": "alice",
                "SendID": "bob",
                "operationID": "o",
                "data": data,
            }
        )
    )
    assert (await alice.answer("x2"))["errCode"] == 1002
    assert len(received.of("alice")) == 1


GROUP = "g-forged"


def forged(name: str) -> tuple[int, bytes]:
    """Requests any client could build, each of which v3.8.3 serves (openim-route-surface.md 1.3)."""
    admin_message = text_message("imAdmin", "bob", "as the admin")
    return {
        "as another user": (1003, text_message("bob", "carol", "as bob")),
        "as imAdmin": (1003, admin_message),
        "from another platform": (1003, text_message("alice", "bob", "from the phone", platform=2)),
        "as the system": (1003, text_message("alice", "bob", "system", msgFrom=200)),
        "a notification type": (1003, text_message("alice", "bob", "notice", contentType=1201)),
        "a revoke type": (1003, text_message("alice", "bob", "revoke", contentType=111)),
        "a write-group session": (1003, text_message("alice", "bob", "super group", sessionType=2)),
        "a notification session": (1003, text_message("alice", "bob", "n", sessionType=4)),
        "to a group she is not in": (1003, text_message("alice", "", "in", sessionType=3, groupID=GROUP)),
        "a pull of bob's conversation": (
            1005,
            msg_pb2.GetSeqMessageReq(
                userID="bob", conversations=[msg_pb2.ConversationSeqs(conversationID="si_bob_carol", seqs=[1])]
            ).SerializeToString(),
        ),
        "a pull of a conversation she is not party to": (
            1005,
            msg_pb2.GetSeqMessageReq(
                userID="alice", conversations=[msg_pb2.ConversationSeqs(conversationID="si_bob_carol", seqs=[1])]
            ).SerializeToString(),
        ),
        "a range pull for bob": (
            1002,
            sdkws_pb2.PullMessageBySeqsReq(
                userID="bob", seqRanges=[sdkws_pb2.SeqRange(conversationID="si_bob_carol", begin=1, end=5, num=5)]
            ).SerializeToString(),
        ),
        "a range pull of a group she is not in": (
            1002,
            sdkws_pb2.PullMessageBySeqsReq(
                userID="alice", seqRanges=[sdkws_pb2.SeqRange(conversationID=f"sg_{GROUP}", begin=1, end=5, num=5)]
            ).SerializeToString(),
        ),
        "a seq read for bob": (1006, own("bob")),
        "a seq read of bob's conversation": (
            1006,
            msg_pb2.GetConversationsHasReadAndMaxSeqReq(
                userID="alice", conversationIDs=["si_bob_carol"]
            ).SerializeToString(),
        ),
        "newest seqs for bob": (1001, sdkws_pb2.GetMaxSeqReq(userID="bob").SerializeToString()),
        "last messages of bob's": (
            1007,
            msg_pb2.GetLastMessageReq(userID="bob", conversationIDs=["si_bob_carol"]).SerializeToString(),
        ),
        "a background status for bob": (2004, sdkws_pb2.SetAppBackgroundStatusReq(userID="bob").SerializeToString()),
        "a signal message": (1004, b""),
        "an unknown reqIdentifier": (4242, own("alice")),
        "undecodable protobuf": (1003, b"\xff\xff\xff"),
    }[name]


REFUSED = {
    "as another user": "sender",
    "as imAdmin": "sender",
    "from another platform": "sender",
    "as the system": "msg_from",
    "a notification type": "content_type",
    "a revoke type": "content_type",
    "a write-group session": "session_type",
    "a notification session": "session_type",
    "to a group she is not in": "not_member",
    "a pull of bob's conversation": "user",
    "a pull of a conversation she is not party to": "not_party",
    "a range pull for bob": "user",
    "a range pull of a group she is not in": "not_party",
    "a seq read for bob": "user",
    "a seq read of bob's conversation": "not_party",
    "newest seqs for bob": "user",
    "last messages of bob's": "user",
    "a background status for bob": "user",
    "a signal message": "req_identifier",
    "an unknown reqIdentifier": "req_identifier",
    "undecodable protobuf": "undecodable",
}


@pytest.fixture
async def group(wire: Wire) -> str:
    """A group of bob and carol (alice is not in it)."""
    admin_token = await wire.admin_token()
    await wire.register(admin_token, "bob", "carol")
    body = {
        "ownerUserID": "bob",
        "memberUserIDs": ["carol"],
        "groupInfo": {"groupID": GROUP, "groupName": "G", "groupType": 2},
    }
    await wire.ok("/group/create_group", body, token=admin_token)
    return GROUP


@pytest.mark.parametrize("name", list(REFUSED))
async def test_a_forged_request_is_answered_1002_and_never_reaches_openim(
    guarded: Gateway, connect: Connect, received: Received, group: str, name: str
) -> None:
    for user in ("bob", "carol"):
        await log_in(guarded, user)
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    ident, data = forged(name)
    reply = await alice.request(ident, data, op="op-forged")
    assert reply == {
        "reqIdentifier": ident,
        "msgIncr": "incr-1",
        "operationID": "op-forged",
        "errCode": 1002,
        "errMsg": "NoPermissionError",
        "data": None,
    }
    assert received.of("alice") == []
    assert sample(guarded.app[METRICS], "messenger_gw_ws_refusals_total", reason=REFUSED[name]) == 1
    label = str(ident) if ident != 4242 else "other"
    assert sample(guarded.app[METRICS], "messenger_gw_ws_frames_total", req_identifier=label, verdict="refused") == 1
    assert (await alice.request(1006, own("alice")))["errCode"] == 0, "the connection stays open"


async def test_an_envelope_naming_another_sender_is_refused_where_openim_would_drop_the_connection(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    reply = await alice.request(1006, own("bob"), send_id="bob")
    assert reply["errCode"] == 1002
    assert received.of("alice") == received.of("bob") == []


async def test_a_member_sends_to_the_group_and_reads_it(
    guarded: Gateway, connect: Connect, received: Received, group: str
) -> None:
    carol = await connect(ws_address(guarded), await log_in(guarded, "carol"))
    reply = await carol.request(1003, text_message("carol", "", "to the group", sessionType=3, groupID=group))
    assert reply["errCode"] == 0
    pull = sdkws_pb2.PullMessageBySeqsReq(
        userID="carol", seqRanges=[sdkws_pb2.SeqRange(conversationID=f"sg_{group}", begin=1, end=10, num=10)]
    )
    assert (await carol.request(1002, pull.SerializeToString()))["errCode"] == 0
    assert received.identifiers("carol") == [1003, 1002]


async def test_an_oversized_frame_is_answered_and_one_beyond_the_guards_bound_closes(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    big = text_message("alice", "bob", "x" * 60_000)
    reply = await alice.request(1003, big)
    assert (reply["errCode"], reply["msgIncr"]) == (1002, "incr-1")
    assert sample(guarded.app[METRICS], "messenger_gw_ws_refusals_total", reason="too_large") == 1
    await alice.send(1003, text_message("alice", "bob", "y" * 300_000))
    closed = await alice.closed()
    assert alice.ws.close_code == 1009, closed
    assert received.of("alice") == []


async def test_a_frame_that_is_no_request_closes_the_connection_unanswered_as_openim_does(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"))
    await alice.ws.send_bytes(b"not json")
    message = await alice.ws.receive(timeout=5)
    assert message.type in (WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE)
    assert received.frames == []


async def test_a_connection_that_keeps_sending_refused_frames_is_closed(
    start_guarded: StartGuarded, connect: Connect
) -> None:
    gateway = await start_guarded(WS_MAX_REFUSALS="3")
    alice = await connect(ws_address(gateway), await log_in(gateway, "alice"))
    for _ in range(3):
        assert (await alice.request(1006, own("bob")))["errCode"] == 1002
    await alice.send(1006, own("bob"))
    assert (await alice.receive())["errCode"] == 1002, "the fourth is answered too"
    await alice.closed()
    assert alice.ws.close_code == 1008
    assert sample(gateway.app[METRICS], "messenger_gw_ws_disconnects_total", reason="refusals") == 1


async def test_gzip_frames_are_checked_and_answered_gzipped(
    guarded: Gateway, connect: Connect, received: Received
) -> None:
    alice = await connect(ws_address(guarded), await log_in(guarded, "alice"), compression="gzip")
    assert (await alice.request(1006, own("alice")))["errCode"] == 0  # OpenIM's gzipped answer
    assert (await alice.request(1006, own("bob")))["errCode"] == 1002  # the guard's, gzipped too
    assert received.identifiers("alice") == [1006]


async def test_a_banned_word_is_refused_with_the_moderation_errcode_without_openims_callbacks(
    start_guarded: StartGuarded, connect: Connect, received: Received, sandbox: Sandbox, tmp_path: Path
) -> None:
    words = tmp_path / "banned.txt"
    words.write_text("scam\n")
    gateway = await start_guarded(WEBHOOK_BANNED_WORDS_FILE=str(words), WEBHOOK_BLOCK_ERRCODE=str(BLOCK))
    assert sandbox.webhook_url is None, "OpenIM calls no webhook here: the guard decides alone"
    alice = await connect(ws_address(gateway), await log_in(gateway, "alice"))
    await log_in(gateway, "bob")
    reply = await alice.request(1003, text_message("alice", "bob", "a real scam"))
    assert (reply["errCode"], reply["errMsg"]) == (BLOCK, "the message contains a banned word")
    assert (await alice.request(1003, text_message("alice", "bob", "good morning")))["errCode"] == 0
    assert received.identifiers("alice") == [1003]
    assert sample(gateway.app[METRICS], "messenger_gw_ws_refusals_total", reason="banned_word") == 1


async def test_messages_past_the_send_bucket_are_refused_with_the_moderation_errcode(
    start_guarded: StartGuarded, connect: Connect, received: Received
) -> None:
    gateway = await start_guarded(RATE_LIMITS="send=1/m:2", WEBHOOK_BLOCK_ERRCODE=str(BLOCK))
    alice = await connect(ws_address(gateway), await log_in(gateway, "alice"))
    await log_in(gateway, "bob")
    answers = [await alice.request(1003, text_message("alice", "bob", f"m{n}")) for n in range(3)]
    assert [a["errCode"] for a in answers] == [0, 0, BLOCK], "the bucket /im's send routes take from too"
    assert answers[2]["errMsg"] == "the sender is sending too fast"
    assert received.identifiers("alice") == [1003, 1003]
    assert (await alice.request(1006, own("alice")))["errCode"] == 0, "reads take nothing from it"


async def test_a_send_bucket_the_store_cannot_spend_from_refuses_messages_when_its_policy_is_closed(
    start_guarded: StartGuarded, connect: Connect, received: Received, clean_redis: RedisProcess
) -> None:
    gateway = await start_guarded(
        RATE_LIMITS="send=60/m:5", RATE_LIMIT_FAIL_POLICY="closed", WEBHOOK_FAIL_POLICY="open",
        WEBHOOK_BLOCK_ERRCODE=str(BLOCK),
    )  # fmt: skip
    alice = await connect(ws_address(gateway), await log_in(gateway, "alice"))
    await log_in(gateway, "bob")
    with clean_redis.client() as c:  # the store refuses this bucket alone: a key of another type
        c.hset("gw:rate:send:{alice}", "not", "a bucket")
    assert (await alice.request(1003, text_message("alice", "bob", "m0")))["errCode"] == 0, "decided by the worker"
    await asyncio.sleep(0.3)  # its spend fails meanwhile
    answer = await alice.request(1003, text_message("alice", "bob", "m1"))
    assert (answer["errCode"], answer["errMsg"]) == (BLOCK, "moderation is unavailable"), "RATE_LIMIT_FAIL_POLICY"
    assert received.identifiers("alice") == [1003]
    labels = {"class": "send", "policy": "closed"}
    assert sample(gateway.app[METRICS], "messenger_gw_rate_limit_unevaluated_total", **labels) >= 1


def test_every_refusal_reason_is_a_metric_label_the_docs_name() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "websocket-guard.md").read_text()
    for reason in REASONS:
        assert f"`{reason}`" in docs, reason


# -- the sockets the gateway ends -----------------------------------------------------------------------


@pytest.fixture
def openim_kicks_nobody(recorder: Recorder) -> None:
    """OpenIM's force_logout fails: whatever ends a socket then is the gateway's own doing."""

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recorder.overrides["/auth/force_logout"] = down


async def test_a_ban_on_one_replica_kicks_the_socket_another_holds_within_a_second(
    start_guarded: StartGuarded, connect: Connect, http: aiohttp.ClientSession, openim_kicks_nobody: None
) -> None:
    first, second = await start_guarded(), await start_guarded()
    login = await log_in(first, "mallory")
    socket = await connect(ws_address(second), login)
    started = time.monotonic()
    status, _ = await admin(first, "/users/mallory/ban", {"reason": "spam"})
    assert status in (200, 207)
    kick = await socket.receive(within=1)
    assert kick == {"reqIdentifier": 2002, "msgIncr": "", "operationID": "", "errCode": 0, "errMsg": "", "data": None}
    await socket.closed(within=1)
    assert time.monotonic() - started < 1.0
    assert socket.ws.close_code != 1000, "dropped as OpenIM drops a kicked connection"
    assert sample(second.app[METRICS], "messenger_gw_ws_disconnects_total", reason="banned") == 1
    ws = await http.ws_connect(ws_address(second), params=login.query())
    refused = await ws.receive(timeout=5)
    assert orjson.loads(refused.data) == {"errCode": 1506, "errMsg": "TokenKickedError", "errDlt": ""}


async def test_a_force_logout_kicks_the_socket(guarded: Gateway, connect: Connect, openim_kicks_nobody: None) -> None:
    socket = await connect(ws_address(guarded), await log_in(guarded, "erin"))
    status, _ = await admin(guarded, "/users/erin/force-logout", {"reason": "lost phone"})
    assert status in (200, 207)
    assert (await socket.receive(within=2))["reqIdentifier"] == 2002
    await socket.closed(within=2)
    assert sample(guarded.app[METRICS], "messenger_gw_ws_disconnects_total", reason="revoked") == 1


async def test_a_replaced_token_kicks_the_socket_holding_the_old_one(
    guarded: Gateway, connect: Connect, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    old = await log_in(guarded, "frank")
    socket = await connect(ws_address(guarded), old)
    sandbox.tokens[old.token].state = TokenState.KICKED  # the next login finds it dead and mints another
    fake_clock.advance(1)  # a token minted in the same second would be the same JWT
    new = await log_in(guarded, "frank")
    assert new.token != old.token
    assert (await socket.receive(within=2))["reqIdentifier"] == 2002
    await socket.closed(within=2)
    assert sample(guarded.app[METRICS], "messenger_gw_ws_disconnects_total", reason="replaced") == 1


async def test_a_silent_client_is_dropped_and_a_pinging_one_kept(start_guarded: StartGuarded, connect: Connect) -> None:
    gateway = await start_guarded(WS_IDLE_TIMEOUT="1")
    silent = await connect(ws_address(gateway), await log_in(gateway, "gina"))
    pinging = await connect(ws_address(gateway), await log_in(gateway, "hal"))
    for _ in range(8):
        await pinging.ws.send_str('{"type":"ping"}')
        assert (await pinging.ws.receive(timeout=2)).type == WSMsgType.TEXT
        await asyncio.sleep(0.25)
    await silent.closed(within=1)
    assert not pinging.ws.closed
    assert sample(gateway.app[METRICS], "messenger_gw_ws_disconnects_total", reason="idle") == 1


async def test_shutdown_fails_readiness_and_closes_every_socket_with_going_away(
    sandbox_server: TestServer, clean_redis: RedisProcess, user_service_url: str, ws_url: str, connect: Connect
) -> None:
    settings = gateway_settings(
        base_url(sandbox_server),
        redis_url=clean_redis.url,
        USER_SERVICE_URL=user_service_url,
        OPENIM_WS_URL_INTERNAL=ws_url,
    )
    app = create_app(settings)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    gateway = Gateway(app, base_url(server))
    socket = await connect(ws_address(gateway), await log_in(gateway, "ivan"))
    closing = asyncio.create_task(server.close())
    message = await socket.closed()
    assert (message.type, socket.ws.close_code, message.extra) == (WSMsgType.CLOSE, 1001, "going away")
    assert app[DRAINING].is_set(), "readiness fails first"
    await closing
    assert sample(app[METRICS], "messenger_gw_ws_disconnects_total", reason="drain") == 1


async def test_a_browser_page_from_an_origin_not_allowed_is_refused_when_origins_are_configured(
    start_guarded: StartGuarded, http: aiohttp.ClientSession, connect: Connect
) -> None:
    gateway = await start_guarded(CORS_ALLOWED_ORIGINS="https://app.example.com")
    login = await log_in(gateway, "alice")
    async with http.get(ws_address(gateway), params=login.query(), headers={"Origin": "https://evil.example"}) as r:
        assert (r.status, (await r.json())["errCode"]) == (403, 40300)
    ws = await http.ws_connect(ws_address(gateway), params=login.query(), headers={"Origin": "https://app.example.com"})
    assert (await ws.receive(timeout=5)).type == WSMsgType.TEXT
    await ws.close()
    held = await connect(ws_address(gateway), login)  # no Origin: no browser
    assert not held.ws.closed


def test_the_dashboard_and_the_alerts_watch_the_guard() -> None:
    import json

    import yaml

    deploy = Path(__file__).parents[2] / "deploy"
    queries = " ".join(
        target["expr"]
        for panel in json.loads((deploy / "grafana" / "messenger-gw.json").read_text())["panels"]
        for target in panel["targets"]
    )
    for metric in ("messenger_gw_ws_connections", "messenger_gw_ws_frames_total", "messenger_gw_ws_refusals_total"):
        assert metric in queries, metric
    [group] = yaml.safe_load((deploy / "prometheus" / "alerts.yaml").read_text())["groups"]
    [surge] = [rule for rule in group["rules"] if rule["alert"] == "MessengerGwWsRefusalSurge"]
    assert "messenger_gw_ws_refusals_total" in surge["expr"]


async def test_a_request_whose_checks_were_waiting_when_its_socket_was_kicked_never_reaches_openim(
    guarded: Gateway, connect: Connect, received: Received, group: str, recorder: Recorder, openim_kicks_nobody: None
) -> None:
    carol = await connect(ws_address(guarded), await log_in(guarded, "carol"))
    asked, answer = asyncio.Event(), asyncio.Event()

    async def slow_members(request: web.Request) -> web.Response:
        asked.set()
        await answer.wait()
        body = {"errCode": 0, "errMsg": "", "errDlt": "", "data": {"members": [{"userID": "carol"}]}}
        return web.json_response(body)

    recorder.overrides["/group/get_group_members_info"] = slow_members
    pull = sdkws_pb2.PullMessageBySeqsReq(
        userID="carol", seqRanges=[sdkws_pb2.SeqRange(conversationID=f"sg_{group}", begin=1, end=10, num=10)]
    )
    await carol.send(1002, pull.SerializeToString())  # no ban check of its own: only the kick stops it now
    await asyncio.wait_for(asked.wait(), 5)  # the guard is asking OpenIM whether carol is in the group
    status, _ = await admin(guarded, "/users/carol/ban", {"reason": "spam"})
    assert status in (200, 207)
    assert (await carol.receive())["reqIdentifier"] == 2002
    answer.set()
    await carol.closed()
    await asyncio.sleep(0.2)
    assert received.of("carol") == []
