"""The sandbox fires OpenIM's callbacks in its wire format and honours before-callback answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.sandbox import Sandbox
from tests.conftest import LOOPBACK, Wire, assert_error, base_url, free_port

TEXT = {"content": "hello"}


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.answer: bytes = b'{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}'

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.path, dict(request.headers), await request.read()))
        return web.Response(body=self.answer, content_type="application/json")

    def bodies(self, command: str) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for path, _, raw in self.calls if path.endswith("/" + command)]


@pytest.fixture
async def receiver(sandbox: Sandbox, wire: Wire) -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    sandbox.webhook_url = base_url(server) + "/hooks/s3cret"
    yield recorder
    await server.close()


@pytest.fixture
async def admin(wire: Wire) -> str:
    token = await wire.admin_token()
    await wire.register(token, "u1", "u2", "u3")
    return token


async def flush(sandbox: Sandbox) -> None:
    assert sandbox.webhooks is not None
    await sandbox.webhooks.flush()


async def send(wire: Wire, admin: str, **fields: Any) -> dict[str, Any]:
    body = {"sendID": "u1", "recvID": "u2", "content": TEXT, "contentType": 101, "sessionType": 1} | fields
    return await wire.post("/msg/send_msg", body, token=admin, op="op-send-1")


async def test_callbacks_use_openims_url_headers_and_body_format(
    wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox
) -> None:
    assert (await send(wire, admin))["errCode"] == 0
    await flush(sandbox)
    paths = [path for path, _, _ in receiver.calls]
    assert "/hooks/s3cret/callbackBeforeSendSingleMsgCommand" in paths
    assert "/hooks/s3cret/callbackAfterSendSingleMsgCommand" in paths
    _, headers, raw = receiver.calls[-1]
    assert raw.endswith(b"\n"), "Go's json.Encoder ends the body with a newline"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["operationID"] == "op-send-1"
    [body] = receiver.bodies("callbackAfterSendSingleMsgCommand")
    assert body["callbackCommand"] == "callbackAfterSendSingleMsgCommand"
    assert body["content"] == '{"content":"hello"}', "a JSON string, not base64"
    assert (body["sendID"], body["recvID"], body["seq"], body["atUserList"]) == ("u1", "u2", 0, None)
    assert "groupID" not in body


async def test_a_block_answer_reaches_the_api_caller(
    wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox
) -> None:
    receiver.answer = b'{"actionCode":0,"nextCode":1,"errCode":20001,"errMsg":"banned word","errDlt":"spam"}'
    reply = await send(wire, admin)
    assert reply == {"errCode": 20001, "errMsg": "banned word", "errDlt": "spam"}
    assert sandbox.messages == {}, "blocked before it was stored"
    await flush(sandbox)
    assert receiver.bodies("callbackAfterSendSingleMsgCommand") == []


async def test_a_block_with_errcode_0_becomes_500_and_other_actions_continue(
    wire: Wire, admin: str, receiver: Receiver
) -> None:
    receiver.answer = b'{"actionCode":0,"nextCode":1,"errCode":0,"errMsg":"no"}'
    assert (await send(wire, admin))["errCode"] == 500
    receiver.answer = b'{"actionCode":1,"nextCode":1,"errCode":7}'
    assert (await send(wire, admin))["errCode"] == 0


async def test_a_non_json_answer_is_90007(wire: Wire, admin: str, receiver: Receiver) -> None:
    receiver.answer = b"<html>oops</html>"
    assert_error(await send(wire, admin), 90007)


async def test_an_unreachable_receiver_is_90004(wire: Wire, admin: str, sandbox: Sandbox) -> None:
    sandbox.webhook_url = f"http://{LOOPBACK}:{free_port()}/hooks"
    assert_error(await send(wire, admin), 90004)


async def test_admin_senders_skip_the_before_callback(
    wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox
) -> None:
    await send(wire, admin, sendID="imAdmin")
    await flush(sandbox)
    assert receiver.bodies("callbackBeforeSendSingleMsgCommand") == []
    assert len(receiver.bodies("callbackAfterSendSingleMsgCommand")) == 1


async def test_group_lifecycle_callbacks_with_their_quirks(
    wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox
) -> None:
    u1 = await wire.user_token(admin, "u1", 1)
    body = {"ownerUserID": "u1", "memberUserIDs": ["u2", "u3"], "groupInfo": {"groupName": "G", "groupType": 2}}
    group_id = (await wire.ok("/group/create_group", body, token=u1))["groupInfo"]["groupID"]
    group_message = await send(wire, admin, sessionType=3, groupID=group_id, recvID="")
    assert group_message["errCode"] == 0
    await wire.ok("/group/kick_group", {"groupID": group_id, "kickedUserIDs": ["u3"], "reason": "bye"}, token=u1)
    u2 = await wire.user_token(admin, "u2", 1)
    await wire.ok("/group/quit_group", {"groupID": group_id, "userID": ""}, token=u2)
    await wire.ok("/group/dismiss_group", {"groupID": group_id}, token=u1)
    await flush(sandbox)
    [created] = receiver.bodies("callbackAfterCreateGroupCommand")
    listed = [(m["userID"], m["roleLevel"]) for m in created["initMemberList"]]
    assert listed == [("u1", 100), ("u2", 20), ("u3", 20), ("u1", 20)], "owner at 100, then everyone again at 20"
    assert receiver.bodies("callbackBeforeSendGroupMsgCommand")[0]["groupID"] == group_id
    assert receiver.bodies("callbackAfterKickGroupCommand") == [
        {
            "callbackCommand": "callbackAfterKickGroupCommand",
            "groupID": group_id,
            "kickedUserIDs": ["u3"],
            "reason": "bye",
        }
    ]
    assert receiver.bodies("callbackAfterQuitGroupCommand")[0]["userID"] == "u2"
    dismissed = receiver.bodies("callbackAfterDisMissGroupCommand")[0]  # the push service's may follow
    assert dismissed["groupType"] == "\u0002"
    assert dismissed["membersID"] == ["u1"]


async def test_register_and_revoke_callbacks(wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox) -> None:
    await wire.register(admin, "u9")
    await send(wire, admin)
    u1 = await wire.user_token(admin, "u1", 1)
    await wire.ok("/msg/revoke_msg", {"conversationID": "si_u1_u2", "seq": 1, "userID": "u1"}, token=u1)
    await flush(sandbox)
    assert receiver.bodies("callbackBeforeUserRegisterCommand")[0]["users"][0]["userID"] == "u9"
    assert receiver.bodies("callbackAfterUserRegisterCommand")[0]["users"][0]["userID"] == "u9"
    assert receiver.bodies("callbackBeforeAfterMsgCommand") == [
        {"callbackCommand": "callbackBeforeAfterMsgCommand", "conversationID": "si_u1_u2", "seq": 1, "userID": "u1"}
    ]


async def test_a_blocked_registration_registers_nobody(
    wire: Wire, admin: str, receiver: Receiver, sandbox: Sandbox
) -> None:
    receiver.answer = b'{"actionCode":0,"nextCode":1,"errCode":20002,"errMsg":"no"}'
    reply = await wire.post("/user/user_register", {"users": [{"userID": "u8", "nickname": "x"}]}, token=admin)
    assert reply["errCode"] == 20002
    assert "u8" not in sandbox.users
