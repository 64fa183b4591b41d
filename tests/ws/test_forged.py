"""Forged requests built in Node with the `ws` package and @openim/protocol (what any client could build): through the
guard each is answered with OpenIM's error answer and never reaches the sandbox; sent straight to the sandbox, which
keeps OpenIM v3.8.3's holes, the same frames do what they were forged for."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from messenger_gw.protocol import msg_pb2
from messenger_gw.sandbox import Sandbox
from tests.conftest import Gateway, Wire
from tests.openim_sdk import run_scenario
from tests.ws.conftest import Received, log_in, ws_address

pytestmark = pytest.mark.slow

GROUP = "g-bob-carol"


def content(value: Any) -> dict[str, str]:
    return {"$bytes": base64.b64encode(orjson.dumps(value)).decode()}


def message(send_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "sendID": send_id,
        "senderPlatformID": 5,
        "clientMsgID": f"forged-{send_id}",
        "sessionType": 1,
        "msgFrom": 100,
        "contentType": 101,
        "content": content({"content": f"from {send_id}"}),
        "createTime": 1,
        "status": 1,
    } | fields


FORGED: list[dict[str, Any]] = [
    {"name": "as-another-user", "reqIdentifier": 1003, "type": "MsgData", "value": message("bob", recvID="carol")},
    {"name": "as-imAdmin", "reqIdentifier": 1003, "type": "MsgData", "value": message("imAdmin", recvID="bob")},
    {
        "name": "notification-type",
        "reqIdentifier": 1003,
        "type": "MsgData",
        "value": message("alice", recvID="bob", contentType=1201, content=content({"detail": "{}"})),
    },
    {
        "name": "group-she-is-not-in",
        "reqIdentifier": 1003,
        "type": "MsgData",
        "value": message("imAdmin", sessionType=3, groupID=GROUP),
    },
    {
        "name": "pull-of-bobs-conversation",
        "reqIdentifier": 1005,
        "type": "GetSeqMessageReq",
        "value": {"userID": "bob", "conversations": [{"conversationID": "si_bob_carol", "seqs": [1]}], "order": 0},
    },
    {
        "name": "seq-read-for-bob",
        "reqIdentifier": 1006,
        "type": "GetConversationsHasReadAndMaxSeqReq",
        "value": {"userID": "bob", "conversationIDs": []},
    },
    {
        "name": "oversized",
        "reqIdentifier": 1006,
        "type": "GetConversationsHasReadAndMaxSeqReq",
        "value": {"userID": "alice", "conversationIDs": []},
        "padTo": 60_000,
    },
    {
        "name": "unknown-reqIdentifier",
        "reqIdentifier": 4242,
        "type": "GetConversationsHasReadAndMaxSeqReq",
        "value": {"userID": "alice", "conversationIDs": []},
    },
]


@pytest.fixture
async def chatting(wire: Wire) -> None:
    """bob has written to carol, and they share a group alice is not in."""
    admin = await wire.admin_token()
    await wire.register(admin, "alice", "bob", "carol")
    body = {
        "sendID": "bob",
        "recvID": "carol",
        "content": {"content": "bob to carol"},
        "contentType": 101,
        "sessionType": 1,
    }
    await wire.ok("/msg/send_msg", body, token=admin)
    group = {
        "ownerUserID": "bob",
        "memberUserIDs": ["carol"],
        "groupInfo": {"groupID": GROUP, "groupName": "G", "groupType": 2},
    }
    await wire.ok("/group/create_group", group, token=admin)


async def forge(url: str, token: str) -> dict[str, Any]:
    args = {"url": url, "login": {"userID": "alice", "token": token, "platformID": 5}, "frames": FORGED}
    answers: dict[str, Any] = (await run_scenario("forge.mjs", args, limit=60))["answers"]
    return answers


async def test_forged_requests_are_refused_by_the_guard_and_served_by_openim_without_it(
    guarded: Gateway, received: Received, sandbox: Sandbox, ws_url: str, chatting: None
) -> None:
    token = (await log_in(guarded, "alice")).token
    through_guard = await forge(ws_address(guarded), token)
    for frame in FORGED:
        got = through_guard[frame["name"]]
        assert got.get("answer") == {
            "reqIdentifier": frame["reqIdentifier"],
            "msgIncr": frame["name"],
            "operationID": f"forge-{frame['name']}",
            "errCode": 1002,
            "errMsg": "NoPermissionError",
            "data": None,
        }, frame["name"]
    assert received.frames == [], "not one of them reached OpenIM"

    direct = await forge(ws_url, token)
    for name in ("as-another-user", "as-imAdmin", "notification-type", "group-she-is-not-in"):
        assert direct[name]["answer"]["errCode"] == 0, (name, direct[name])
    assert [m["sendID"] for m in sandbox.messages["si_bob_carol"]] == ["bob", "bob"], "alice wrote as bob"
    assert sandbox.messages["si_bob_imAdmin"][0]["sendID"] == "imAdmin"
    assert sandbox.messages["si_alice_bob"][0]["contentType"] == 1201
    assert sandbox.messages[f"sg_{GROUP}"][-1]["sendID"] == "imAdmin", "into a group she is not in"
    pulled = msg_pb2.GetSeqMessageResp.FromString(
        base64.b64decode(direct["pull-of-bobs-conversation"]["answer"]["data"])
    )
    assert [m.content for m in pulled.msgs["si_bob_carol"].Msgs] == [b'{"content":"bob to carol"}']
    seqs = msg_pb2.GetConversationsHasReadAndMaxSeqResp.FromString(
        base64.b64decode(direct["seq-read-for-bob"]["answer"]["data"])
    )
    assert seqs.seqs["si_bob_carol"].maxSeq >= 1, "bob's conversations, read by alice"
    # What OpenIM does with the last two: it drops the connection unanswered (the guard answers them).
    assert direct["oversized"] == {"closed": 1009}
    assert "answer" not in direct["unknown-reqIdentifier"]
