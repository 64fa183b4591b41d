"""messenger_gw.protocol: the generated code is what the .proto files give, and it speaks the
same wire as the SDK's own codec (@openim/protocol 0.0.7, run in Node), both ways."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

from messenger_gw.protocol import conversation_pb2, jssdk_pb2, msg_pb2, relation_pb2, sdkws_pb2
from tests.openim_sdk import run_node

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_protocol_modules_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate-protocol"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "messenger_gw" / "protocol").iterdir())
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "messenger_gw" / "protocol").glob("*_pb2.py*"))
    assert generated == committed
    for path in generated:
        assert (tmp_path / path).read_bytes() == (ROOT / path).read_bytes(), (
            f"{path} is stale: run scripts/generate-protocol"
        )


def b64(data: bytes) -> dict[str, str]:
    return {"$bytes": base64.b64encode(data).decode()}


def message() -> sdkws_pb2.MsgData:
    return sdkws_pb2.MsgData(
        sendID="alice",
        recvID="bob",
        clientMsgID="e01165332d31dbac28856de5d36b95de",
        serverMsgID="9b2c0f0e5a1d4e3f8a7b6c5d4e3f2a1b",
        senderPlatformID=5,
        senderNickname="Alice",
        sessionType=1,
        msgFrom=100,
        contentType=101,
        content='{"content":"héllo"}'.encode(),
        seq=7,
        sendTime=1_736_841_600_123,
        createTime=1_736_841_600_001,
        status=2,
        options={"history": True, "unreadCount": False},
        offlinePushInfo=sdkws_pb2.OfflinePushInfo(title="t", desc="d", iOSBadgeCount=True),
        atUserIDList=["carol"],
        ex="x",
    )


async def test_the_sdk_codec_decodes_what_python_encodes() -> None:
    msg = message()
    push = sdkws_pb2.PushMessages()
    push.msgs["si_alice_bob"].Msgs.append(msg)
    pulled = msg_pb2.GetSeqMessageResp()
    pulled.msgs["si_alice_bob"].CopyFrom(sdkws_pb2.PullMsgs())  # empty, as for seqs that do not exist
    seqs = msg_pb2.GetConversationsHasReadAndMaxSeqResp()
    seqs.seqs["si_alice_bob"].CopyFrom(msg_pb2.Seqs(maxSeq=3, hasReadSeq=1, maxSeqTime=1_736_841_600_123))
    conversations = jssdk_pb2.GetConversationsResp(
        unreadCount=2,
        conversations=[
            jssdk_pb2.ConversationMsg(
                conversation=conversation_pb2.Conversation(
                    ownerUserID="bob", conversationID="si_alice_bob", conversationType=1, userID="alice"
                ),
                lastMsg=msg,
                user=sdkws_pb2.UserInfo(userID="alice", nickname="Alice", createTime=1_736_841_600_000),
                friend=relation_pb2.FriendInfoOnly(ownerUserID="bob", friendUserID="alice", remark="A"),
                maxSeq=3,
                readSeq=1,
            )
        ],
    )
    sent = msg_pb2.SendMsgResp(serverMsgID="s", clientMsgID="c", sendTime=1_736_841_600_123)
    newest = sdkws_pb2.GetMaxSeqResp(maxSeqs={"si_alice_bob": 3})
    online = sdkws_pb2.SubUserOnlineStatusTips(
        subscribers=[sdkws_pb2.SubUserOnlineStatusElem(userID="bob", onlinePlatformIDs=[5, 2])]
    )
    cases: list[tuple[str, Any]] = [
        ("MsgData", msg),
        ("PushMessages", push),
        ("GetSeqMessageResp", pulled),
        ("GetConversationsHasReadAndMaxSeqResp", seqs),
        ("GetConversationsResp", conversations),
        ("UserSendMsgResp", sent),  # how the SDK reads the 1003 reply
        ("GetMaxSeqResp", newest),
        ("SubUserOnlineStatusTips", online),
    ]
    decoded = await run_node(
        "protocol.mjs", [{"op": "decode", "type": name, "hex": pb.SerializeToString().hex()} for name, pb in cases]
    )
    got = dict(zip([name for name, _ in cases], decoded, strict=True))
    js_msg = got["MsgData"]
    assert {k: js_msg[k] for k in ("sendID", "recvID", "clientMsgID", "serverMsgID", "senderNickname", "ex")} == {
        "sendID": "alice",
        "recvID": "bob",
        "clientMsgID": msg.clientMsgID,
        "serverMsgID": msg.serverMsgID,
        "senderNickname": "Alice",
        "ex": "x",
    }
    assert (js_msg["senderPlatformID"], js_msg["sessionType"], js_msg["msgFrom"], js_msg["contentType"]) == (
        5,
        1,
        100,
        101,
    )
    assert js_msg["content"] == b64(msg.content)
    assert (js_msg["seq"], js_msg["sendTime"], js_msg["createTime"], js_msg["status"]) == (
        7,
        1_736_841_600_123,
        1_736_841_600_001,
        2,
    )
    assert js_msg["options"] == {"history": True, "unreadCount": False}
    assert js_msg["offlinePushInfo"]["title"] == "t"
    assert js_msg["offlinePushInfo"]["iOSBadgeCount"] is True
    assert js_msg["atUserIDList"] == ["carol"]
    assert got["PushMessages"]["msgs"]["si_alice_bob"]["Msgs"][0]["seq"] == 7
    assert got["GetSeqMessageResp"]["msgs"] == {"si_alice_bob": {"Msgs": [], "isEnd": False}}, (
        "an empty entry keeps its value, or the SDK's decoder drops it"
    )
    assert got["GetConversationsHasReadAndMaxSeqResp"]["seqs"] == {
        "si_alice_bob": {"maxSeq": 3, "hasReadSeq": 1, "maxSeqTime": 1_736_841_600_123}
    }
    [item] = got["GetConversationsResp"]["conversations"]
    assert got["GetConversationsResp"]["unreadCount"] == 2
    assert item["conversation"]["conversationID"] == "si_alice_bob"
    assert item["conversation"]["conversationType"] == 1
    assert item["lastMsg"]["seq"] == 7
    assert item["user"]["nickname"] == "Alice"
    assert item["user"]["createTime"] == 1_736_841_600_000
    assert item["friend"]["remark"] == "A"
    assert (item["maxSeq"], item["readSeq"]) == (3, 1)
    assert got["UserSendMsgResp"] == {"serverMsgID": "s", "clientMsgID": "c", "sendTime": 1_736_841_600_123}
    assert got["GetMaxSeqResp"]["maxSeqs"] == {"si_alice_bob": 3}
    assert got["SubUserOnlineStatusTips"] == {"subscribers": [{"userID": "bob", "onlinePlatformIDs": [5, 2]}]}


def js_message(**fields: Any) -> dict[str, Any]:
    """A MsgData as the SDK builds it for 1003 (protocol document 2.6): every field present."""
    base: dict[str, Any] = {
        "sendID": "alice", "recvID": "bob", "groupID": "", "clientMsgID": "e01165332d31dbac28856de5d36b95de",
        "serverMsgID": "", "senderPlatformID": 5, "senderNickname": "Alice", "senderFaceURL": "", "sessionType": 1,
        "msgFrom": 100, "contentType": 101, "content": b64(b'{"content":"hello bob"}'), "seq": 0, "sendTime": 0,
        "createTime": 1_736_841_600_456, "status": 1, "isRead": False, "options": {"history": False},
        "offlinePushInfo": {"title": "you hava a new message.", "desc": "you hava a new message.", "ex": "",
                            "iOSPushSound": "", "iOSBadgeCount": True, "signalInfo": ""},
        "atUserIDList": [], "attachedInfo": "", "ex": "", "keyVersion": 0, "dstUserIDs": [],
    }  # fmt: skip
    return base | fields


async def test_python_decodes_what_the_sdk_codec_encodes() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("MsgData", js_message()),
        ("GetSeqMessageReq", {"userID": "bob", "conversations": [{"conversationID": "si_alice_bob", "seqs": [0, 3, 4]}],
                              "order": 1}),
        ("PullMessageBySeqsReq", {"userID": "bob", "seqRanges": [{"conversationID": "si_alice_bob", "begin": 2,
                                                                  "end": 9, "num": 10}], "order": 0}),
        ("GetConversationsHasReadAndMaxSeqReq", {"userID": "bob", "conversationIDs": []}),
        ("GetActiveConversationsReq", {"ownerUserID": "bob", "count": 20}),
        ("GetConversationsReq", {"ownerUserID": "bob", "conversationIDs": ["si_alice_bob"]}),
        ("SubUserOnlineStatus", {"subscribeUserID": ["alice"], "unsubscribeUserID": []}),
    ]  # fmt: skip
    encoded = await run_node("protocol.mjs", [{"op": "encode", "type": name, "value": v} for name, v in cases])
    raw = dict(zip([name for name, _ in cases], (bytes.fromhex(h) for h in encoded), strict=True))

    msg = sdkws_pb2.MsgData.FromString(raw["MsgData"])
    assert (msg.sendID, msg.recvID, msg.senderNickname, msg.senderPlatformID) == ("alice", "bob", "Alice", 5)
    assert (msg.sessionType, msg.msgFrom, msg.contentType, msg.status) == (1, 100, 101, 1)
    assert msg.content == b'{"content":"hello bob"}'
    assert msg.createTime == 1_736_841_600_456
    assert dict(msg.options) == {"history": False}
    assert msg.offlinePushInfo.iOSBadgeCount is True
    assert msg.offlinePushInfo.title == "you hava a new message."

    pull = msg_pb2.GetSeqMessageReq.FromString(raw["GetSeqMessageReq"])
    assert pull.userID == "bob"
    assert [(c.conversationID, list(c.seqs)) for c in pull.conversations] == [("si_alice_bob", [0, 3, 4])]
    assert pull.order == sdkws_pb2.PullOrderAsc, "the SDK's GetSeqMessageReq has no order field: 1005 is ascending"

    ranges = sdkws_pb2.PullMessageBySeqsReq.FromString(raw["PullMessageBySeqsReq"])
    [seq_range] = ranges.seqRanges
    assert (seq_range.conversationID, seq_range.begin, seq_range.end, seq_range.num) == ("si_alice_bob", 2, 9, 10)

    assert (
        msg_pb2.GetConversationsHasReadAndMaxSeqReq.FromString(raw["GetConversationsHasReadAndMaxSeqReq"]).userID
        == "bob"
    )
    active = jssdk_pb2.GetActiveConversationsReq.FromString(raw["GetActiveConversationsReq"])
    assert (active.ownerUserID, active.count) == ("bob", 20)
    assert list(jssdk_pb2.GetConversationsReq.FromString(raw["GetConversationsReq"]).conversationIDs) == [
        "si_alice_bob"
    ]
    assert list(sdkws_pb2.SubUserOnlineStatus.FromString(raw["SubUserOnlineStatus"]).subscribeUserID) == ["alice"]
