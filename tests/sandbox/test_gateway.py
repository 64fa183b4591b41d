"""The sandbox's msg-gateway frame by frame, against openim-sdk-protocol.md section 2 and v3.8.3's
msggateway: the upgrade's checks and answers, the envelopes, and the holes kept on purpose."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from messenger_gw.protocol import msg_pb2, sdkws_pb2
from messenger_gw.sandbox import Sandbox, SandboxConfig, create_sandbox_ws_app
from tests.conftest import LOOPBACK, Wire, base_url
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures
from tests.sandbox.test_webhooks import Receiver, receiver  # noqa: F401 - fixtures


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def users(im: IM) -> IM:  # noqa: F811
    await im.register("alice", "bob", "carol")
    return im


def query(user: str, token: str, platform: int = 5, **extra: str) -> dict[str, str]:
    return {"sendID": user, "token": token, "platformID": str(platform), "operationID": "op-login",
            "isBackground": "false", "isMsgResp": "true", "sdkType": "js"} | extra  # fmt: skip


class Client:
    """One raw msg-gateway connection, speaking as the SDK does."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user: str) -> None:
        self.ws = ws
        self.user = user
        self.pushes: list[dict[str, Any]] = []
        self._n = 0

    async def request(self, ident: int, data: bytes = b"", *, send_id: str | None = None, op: str = "op-1",
                      **envelope: Any) -> dict[str, Any]:  # fmt: skip
        """Send a request and return its reply (pushes that arrive meanwhile are kept)."""
        self._n += 1
        incr = f"incr-{self._n}"
        frame = {"reqIdentifier": ident, "msgIncr": incr, "sendID": self.user if send_id is None else send_id,
                 "operationID": op, "data": base64.b64encode(data).decode()} | envelope  # fmt: skip
        await self.ws.send_bytes(orjson.dumps(frame))
        while True:
            reply = await self.receive()
            if reply["msgIncr"] == frame["msgIncr"]:
                return reply
            self.pushes.append(reply)

    async def receive(self) -> dict[str, Any]:
        message = await self.ws.receive(timeout=3)
        assert message.type == WSMsgType.BINARY, message
        value: dict[str, Any] = orjson.loads(message.data)
        return value

    async def push(self) -> dict[str, Any]:
        return self.pushes.pop(0) if self.pushes else await self.receive()


async def connect(session: aiohttp.ClientSession, im: IM, user: str, platform: int = 5) -> Client:  # noqa: F811
    token = await im.token(user, platform)
    ws = await session.ws_connect(im.ws_addr + "/msg_gateway", params=query(user, token, platform))
    hello = await ws.receive(timeout=3)
    assert hello.type == WSMsgType.TEXT
    assert orjson.loads(hello.data) == {"errCode": 0, "errMsg": "", "errDlt": ""}
    return Client(ws, user)


def text_message(send_id: str, recv_id: str, text: str, **fields: Any) -> bytes:
    msg = sdkws_pb2.MsgData(
        sendID=send_id, recvID=recv_id, clientMsgID=f"c-{text}", senderPlatformID=5, senderNickname=send_id.title(),
        sessionType=1, msgFrom=100, contentType=101, content=orjson.dumps({"content": text}), createTime=1, status=1,
    )  # fmt: skip
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg.SerializeToString()


def data_of(reply: dict[str, Any]) -> bytes:
    assert reply["errCode"] == 0, reply
    return base64.b64decode(reply["data"])


def pushed(frame: dict[str, Any]) -> list[sdkws_pb2.MsgData]:
    assert frame["reqIdentifier"] == 2001
    push = sdkws_pb2.PushMessages.FromString(base64.b64decode(frame["data"]))
    return [m for entry in push.msgs.values() for m in entry.Msgs]


# -- the upgrade ------------------------------------------------------------------------------------


async def get_envelope(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> dict[str, Any]:
    async with session.get(url, params=params) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        value: dict[str, Any] = await response.json()
        return value


@pytest.mark.parametrize(
    "missing",
    [{"token": ""}, {"sendID": ""}, {"platformID": ""}, {"platformID": "web"}, {"sdkType": "swift"}],
)
async def test_missing_or_bad_arguments_are_1602_over_plain_http(
    session: aiohttp.ClientSession, users: IM, missing: dict[str, str]
) -> None:
    token = await users.token("alice")
    reply = await get_envelope(session, users.ws_addr + "/", query("alice", token) | missing)
    assert reply == {"errCode": 1602, "errMsg": "args err, need token, sendID, platformID", "errDlt": ""}


async def test_the_connection_limit_is_checked_first_with_1601(session: aiohttp.ClientSession) -> None:
    limited = Sandbox(SandboxConfig(max_connections=0))
    server = TestServer(create_sandbox_ws_app(limited), host=LOOPBACK)
    await server.start_server()
    try:
        reply = await get_envelope(session, base_url(server), {})
    finally:
        await server.close()
    assert reply == {"errCode": 1601, "errMsg": "ConnOverMaxNumLimit", "errDlt": ""}


async def test_a_bad_token_with_is_msg_resp_is_a_text_frame_then_the_connection_drops(
    session: aiohttp.ClientSession, users: IM
) -> None:
    ws = await session.ws_connect(users.ws_addr + "/any/path", params=query("alice", "abc"))
    first = await ws.receive(timeout=3)
    assert first.type == WSMsgType.TEXT
    assert orjson.loads(first.data) == {"errCode": 1503, "errMsg": "TokenMalformedError",
                                        "errDlt": "jwt parse error, token=abc"}  # fmt: skip
    closed = await ws.receive(timeout=3)
    assert closed.type in (WSMsgType.CLOSED, WSMsgType.CLOSE, WSMsgType.ERROR)
    assert ws.close_code != 1000, "no close frame: the TCP connection just ends"


async def test_a_bad_token_without_is_msg_resp_is_plain_http(session: aiohttp.ClientSession, users: IM) -> None:
    reply = await get_envelope(session, users.ws_addr + "/", query("alice", "abc", isMsgResp="no"))
    assert reply["errCode"] == 1503


async def test_a_token_of_another_user_or_platform_is_1502_over_plain_http(
    session: aiohttp.ClientSession, users: IM
) -> None:
    alice = await users.token("alice", 5)
    for params in (query("bob", alice), query("alice", alice, platform=2)):
        reply = await get_envelope(session, users.ws_addr + "/", params)
        assert reply == {"errCode": 1502, "errMsg": "TokenInvalidError", "errDlt": ""}


# -- frames ---------------------------------------------------------------------------------------


async def test_text_ping_gets_a_text_pong_and_msg_incr_is_echoed(session: aiohttp.ClientSession, users: IM) -> None:
    alice = await connect(session, users, "alice")
    await alice.ws.send_str('{"type":"ping"}')
    pong = await alice.ws.receive(timeout=3)
    assert (pong.type, pong.data) == (WSMsgType.TEXT, '{"type":"pong","body":null}')
    reply = await alice.request(1006, msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID="alice").SerializeToString())
    assert reply == {"reqIdentifier": 1006, "msgIncr": "incr-1", "operationID": "op-1", "errCode": 0, "errMsg": "",
                     "data": ""}  # fmt: skip


@pytest.mark.parametrize(
    "frame",
    [
        {"reqIdentifier": 1006, "sendID": "bob", "msgIncr": "1", "operationID": "o"},  # not the connection's user
        {"reqIdentifier": 4242, "sendID": "alice", "msgIncr": "1", "operationID": "o"},  # unknown
        {"reqIdentifier": "1006", "sendID": "alice"},  # not Go-decodable into Req
    ],
)
async def test_a_frame_openim_rejects_closes_the_connection_unanswered(
    session: aiohttp.ClientSession, users: IM, frame: dict[str, Any]
) -> None:
    alice = await connect(session, users, "alice")
    await alice.ws.send_bytes(orjson.dumps(frame))
    closed = await alice.ws.receive(timeout=3)
    assert closed.type in (WSMsgType.CLOSED, WSMsgType.CLOSE, WSMsgType.ERROR)


async def test_pulls_without_operation_id_get_the_validators_500(session: aiohttp.ClientSession, users: IM) -> None:
    alice = await connect(session, users, "alice")
    reply = await alice.request(1005, b"", op="")
    assert reply["errCode"] == 500
    assert (
        reply["errMsg"]
        == "Key: 'Req.OperationID' Error:Field validation for 'OperationID' failed on the 'required' tag"
    )
    assert reply["data"] is None


async def test_gzip_compression_applies_to_binary_frames_both_ways(session: aiohttp.ClientSession, users: IM) -> None:
    token = await users.token("alice")
    ws = await session.ws_connect(users.ws_addr, params=query("alice", token, compression="gzip"))
    assert (await ws.receive(timeout=3)).type == WSMsgType.TEXT  # the handshake answer stays plain text
    data = base64.b64encode(msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID="alice").SerializeToString()).decode()
    request = {"reqIdentifier": 1006, "msgIncr": "1", "sendID": "alice", "operationID": "o", "data": data}
    await ws.send_bytes(gzip.compress(orjson.dumps(request)))
    reply = await ws.receive(timeout=3)
    assert orjson.loads(gzip.decompress(reply.data))["reqIdentifier"] == 1006


# -- messages -------------------------------------------------------------------------------------


async def test_a_send_is_answered_then_pushed_to_every_connection_of_both_parties(
    session: aiohttp.ClientSession, users: IM
) -> None:
    alice_web, alice_phone = await connect(session, users, "alice", 5), await connect(session, users, "alice", 2)
    bob = await connect(session, users, "bob")
    reply = await alice_web.request(1003, text_message("alice", "bob", "hi"), op="op-send")
    sent = msg_pb2.SendMsgResp.FromString(base64.b64decode(reply["data"]))
    assert len(sent.serverMsgID) == 32
    assert sent.sendTime > 0
    for conn in (bob, alice_web, alice_phone):
        frame = await conn.push()
        assert frame["operationID"] == "op-send", "the push carries the sending request's operationID"
        assert frame["msgIncr"] == ""
        [msg] = pushed(frame)
        assert (msg.seq, msg.serverMsgID, msg.content) == (1, sent.serverMsgID, b'{"content":"hi"}')


async def test_a_rest_send_msg_is_pushed_to_live_connections(
    session: aiohttp.ClientSession, users: IM, wire: Wire
) -> None:
    bob = await connect(session, users, "bob")
    body = {"sendID": "alice", "recvID": "bob", "content": {"content": "rest"}, "contentType": 101, "sessionType": 1}
    assert (await wire.post("/msg/send_msg", body, token=users.admin, op="op-rest"))["errCode"] == 0
    frame = await bob.push()
    assert frame["operationID"] == "op-rest"
    [msg] = pushed(frame)
    assert (msg.sendID, msg.msgFrom, msg.seq) == ("alice", 200, 1)


async def test_the_store_is_shared_read_marks_move_forward_and_empty_pull_entries_stay(
    session: aiohttp.ClientSession, users: IM, wire: Wire
) -> None:
    alice = await connect(session, users, "alice")
    await alice.request(1003, text_message("alice", "bob", "one"))
    body = {"sendID": "alice", "recvID": "bob", "content": {"content": "two"}, "contentType": 101, "sessionType": 1}
    await wire.post("/msg/send_msg", body, token=users.admin)
    bob = await connect(session, users, "bob")
    asked = msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID="bob").SerializeToString()
    seqs = msg_pb2.GetConversationsHasReadAndMaxSeqResp.FromString(data_of(await bob.request(1006, asked))).seqs
    assert (seqs["si_alice_bob"].maxSeq, seqs["si_alice_bob"].hasReadSeq) == (2, 0)
    assert seqs["si_alice_bob"].maxSeqTime > 0
    mark = {"conversationID": "si_alice_bob", "seqs": [1, 2], "hasReadSeq": 2, "userID": "bob"}
    assert (await wire.post("/msg/mark_conversation_as_read", mark, token=await users.token("bob", 2)))["errCode"] == 0
    await wire.post("/msg/mark_conversation_as_read", mark | {"hasReadSeq": 1}, token=users.admin)
    read = await wire.ok("/msg/get_conversations_has_read_and_max_seq", {"userID": "bob"}, token=users.admin)
    assert read["seqs"]["si_alice_bob"]["hasReadSeq"] == 2
    alice_read = await wire.ok("/msg/get_conversations_has_read_and_max_seq", {"userID": "alice"}, token=users.admin)
    assert alice_read["seqs"]["si_alice_bob"]["hasReadSeq"] == 2, "the sender has read what it sent"
    wanted = msg_pb2.GetSeqMessageReq(
        userID="bob",
        conversations=[msg_pb2.ConversationSeqs(conversationID="si_alice_bob", seqs=[0, 1, 2, 3]),
                       msg_pb2.ConversationSeqs(conversationID="si_bob_carol", seqs=[1])],
    )  # fmt: skip
    got = msg_pb2.GetSeqMessageResp.FromString(data_of(await bob.request(1005, wanted.SerializeToString())))
    assert [m.content for m in got.msgs["si_alice_bob"].Msgs] == [b'{"content":"one"}', b'{"content":"two"}']
    assert got.msgs["si_alice_bob"].isEnd
    assert "si_bob_carol" in got.msgs, "every conversation asked keeps an entry"
    records = await wire.ok(
        "/conversation/get_conversations",
        {"ownerUserID": "bob", "conversationIDs": ["si_alice_bob"]},
        token=users.admin,
    )
    assert records["conversations"][0]["userID"] == "alice", "both parties have a conversation record"


# -- v3.8.3's holes, kept on purpose --------------------------------------------------------------


async def test_msgdata_send_id_is_trusted_so_a_connection_can_speak_for_someone_else(
    session: aiohttp.ClientSession, users: IM
) -> None:
    alice = await connect(session, users, "alice")
    carol = await connect(session, users, "carol")
    reply = await alice.request(1003, text_message("bob", "carol", "not really bob"))
    assert reply["errCode"] == 0
    [msg] = pushed(await carol.push())
    assert msg.sendID == "bob"


async def test_a_pulls_user_id_is_trusted(session: aiohttp.ClientSession, users: IM, wire: Wire) -> None:
    body = {"sendID": "alice", "recvID": "bob", "content": {"content": "private"}, "contentType": 101, "sessionType": 1}
    await wire.post("/msg/send_msg", body, token=users.admin)
    carol = await connect(session, users, "carol")
    wanted = msg_pb2.GetSeqMessageReq(
        userID="bob", conversations=[msg_pb2.ConversationSeqs(conversationID="si_alice_bob", seqs=[1])]
    )
    got = msg_pb2.GetSeqMessageResp.FromString(data_of(await carol.request(1005, wanted.SerializeToString())))
    assert got.msgs["si_alice_bob"].Msgs[0].content == b'{"content":"private"}'
    ranges = sdkws_pb2.PullMessageBySeqsReq(
        userID="bob", seqRanges=[sdkws_pb2.SeqRange(conversationID="si_alice_bob", begin=0, end=10, num=10)]
    )
    pulled = sdkws_pb2.PullMessageBySeqsResp.FromString(
        base64.b64decode((await carol.request(1002, ranges.SerializeToString()))["data"])
    )
    assert [m.seq for m in pulled.msgs["si_alice_bob"].Msgs] == [1]


async def test_an_admin_send_id_or_a_notification_type_skips_the_before_send_callback(
    session: aiohttp.ClientSession,
    users: IM,
    receiver: Receiver,  # noqa: F811
    sandbox: Sandbox,
) -> None:
    receiver.answer = b'{"actionCode":0,"nextCode":1,"errCode":20001,"errMsg":"blocked"}'
    alice = await connect(session, users, "alice")
    assert (await alice.request(1003, text_message("alice", "bob", "plain")))["errCode"] == 20001
    assert (await alice.request(1003, text_message("imAdmin", "bob", "as admin")))["errCode"] == 0
    assert (await alice.request(1003, text_message("alice", "bob", "as notice", contentType=1400)))["errCode"] == 0
    assert sandbox.webhooks is not None
    await sandbox.webhooks.flush()
    assert len(receiver.bodies("callbackBeforeSendSingleMsgCommand")) == 1
    sent = receiver.bodies("callbackAfterSendSingleMsgCommand")
    assert [b["sendID"] for b in sent] == ["imAdmin", "alice"], "the after-callback still fires for both"


async def test_force_logout_and_a_second_login_kick_live_connections_with_2002(
    session: aiohttp.ClientSession, users: IM, wire: Wire
) -> None:
    first = await connect(session, users, "alice")
    await connect(session, users, "alice")
    kick = await first.receive()
    assert kick == {"reqIdentifier": 2002, "msgIncr": "", "operationID": "", "errCode": 0, "errMsg": "", "data": None}
    bob = await connect(session, users, "bob", 2)
    await wire.ok("/auth/force_logout", {"userID": "bob", "platformID": 2}, token=users.admin)
    assert (await bob.receive())["reqIdentifier"] == 2002
