"""The sandbox's message, group and conversation routes against the contract (sections 4-6, 10)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from messenger_gw.sandbox import FakeClock
from tests.conftest import Wire, assert_error

TEXT = {"content": "hello"}


@pytest.fixture
async def admin(wire: Wire) -> str:
    token = await wire.admin_token()
    await wire.register(token, "u1", "u2", "u3", "u4")
    return token


async def send(wire: Wire, admin: str, **fields: Any) -> dict[str, Any]:
    body = {"sendID": "u1", "recvID": "u2", "content": TEXT, "contentType": 101, "sessionType": 1} | fields
    return await wire.post("/msg/send_msg", body, token=admin)


async def group(wire: Wire, admin: str, owner: str = "u1", members: tuple[str, ...] = ("u2", "u3")) -> str:
    body = {"ownerUserID": owner, "memberUserIDs": list(members), "groupInfo": {"groupName": "G", "groupType": 2}}
    data = await wire.ok("/group/create_group", body, token=admin)
    group_id: str = data["groupInfo"]["groupID"]
    return group_id


# -- messages -------------------------------------------------------------------------------------


async def test_send_msg_needs_the_admin_token(wire: Wire, admin: str) -> None:
    user = await wire.user_token(admin, "u1", 1)
    reply = await send(wire, user)
    assert reply == {"errCode": 1002, "errMsg": "only app manager can send message", "errDlt": ""}


async def test_send_msg_answers_generated_ids(wire: Wire, admin: str, fake_clock: FakeClock) -> None:
    data = (await send(wire, admin))["data"]
    assert len(data["serverMsgID"]) == len(data["clientMsgID"]) == 32
    assert data["sendTime"] == int(fake_clock() * 1000)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"contentType": 111}, 1001),  # not accepted over REST
        ({"contentType": 0}, 1001),
        ({"sessionType": 2}, 1001),
        ({"sessionType": 4}, 1001),  # 4 only with 1400
        ({"recvID": "ghost"}, 1004),
        ({"content": {"content": ""}}, 500),  # the shape validator
    ],
)
async def test_send_msg_rejections(wire: Wire, admin: str, fields: dict[str, Any], code: int) -> None:
    assert_error(await send(wire, admin, **fields), code)


async def test_send_msg_validator_text_is_the_errmsg(wire: Wire, admin: str) -> None:
    reply = await send(wire, admin, content={"content": ""})
    assert (
        reply["errMsg"] == "Key: 'TextElem.Content' Error:Field validation for 'Content' failed on the 'required' tag"
    )


async def test_group_sends_check_membership_dismissal_and_mutes(wire: Wire, admin: str) -> None:
    group_id = await group(wire, admin)
    assert_error(await send(wire, admin, sendID="u4", sessionType=3, groupID=group_id), 1203)
    assert_error(await send(wire, admin, sessionType=3, groupID="404"), 1004)
    mute = {"groupID": group_id, "userID": "u2", "mutedSeconds": 60}
    assert await wire.ok("/group/mute_group_member", mute, token=admin) is None
    assert_error(await send(wire, admin, sendID="u2", sessionType=3, groupID=group_id), 1402)
    assert (await send(wire, admin, sessionType=3, groupID=group_id))["errCode"] == 0, "the owner is never muted"
    await wire.ok("/group/dismiss_group", {"groupID": group_id}, token=admin)
    assert_error(await send(wire, admin, sessionType=3, groupID=group_id), 1204)


async def test_pull_msg_by_seq_has_capital_msgs_base64_content_and_no_ownership_check(
    wire: Wire,
    admin: str,
) -> None:
    await send(wire, admin)
    await send(wire, admin, sendID="u2", recvID="u1", content={"content": "back"})
    stranger = await wire.user_token(admin, "u3", 1)
    ranges = [
        {"conversationID": "si_u1_u2", "begin": 1, "end": 10, "num": 10},
        {"conversationID": "si_u1_u3", "begin": 1, "end": 10, "num": 10},
    ]
    # The userID is taken from the body: any token reads a conversation by naming one of its parties.
    data = await wire.ok("/msg/pull_msg_by_seq", {"userID": "u1", "seqRanges": ranges, "order": 0}, token=stranger)
    assert set(data) == {"msgs", "notificationMsgs"}
    assert list(data["msgs"]) == ["si_u1_u2"], "conversations without messages are left out"
    entry = data["msgs"]["si_u1_u2"]
    assert set(entry) == {"Msgs", "isEnd", "endSeq"}
    assert [m["seq"] for m in entry["Msgs"]] == [1, 2]
    assert orjson.loads(base64.b64decode(entry["Msgs"][1]["content"])) == {"content": "back"}
    assert entry["Msgs"][0]["msgFrom"] == 200
    own = await wire.ok("/msg/pull_msg_by_seq", {"userID": "u3", "seqRanges": ranges, "order": 0}, token=stranger)
    assert own == {"msgs": None, "notificationMsgs": None}, "a userID without a conversation record gets nothing"


async def test_has_read_and_max_seq(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    await send(wire, admin)
    u2 = await wire.user_token(admin, "u2", 1)
    await wire.ok(
        "/msg/mark_conversation_as_read", {"conversationID": "si_u1_u2", "userID": "u2", "hasReadSeq": 1}, token=u2
    )
    data = await wire.ok(
        "/msg/get_conversations_has_read_and_max_seq", {"userID": "u2", "conversationIDs": []}, token=u2
    )
    assert data["seqs"]["si_u1_u2"]["maxSeq"] == 2
    assert data["seqs"]["si_u1_u2"]["hasReadSeq"] == 1


async def test_revoke_msg_rules(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    u1, u2 = await wire.user_token(admin, "u1", 1), await wire.user_token(admin, "u2", 1)
    revoke = {"conversationID": "si_u1_u2", "seq": 1}
    assert_error(await wire.post("/msg/revoke_msg", revoke | {"userID": "u2"}, token=u2), 1002)
    assert_error(await wire.post("/msg/revoke_msg", revoke | {"userID": "u1"}, token=u2), 1002)
    assert await wire.ok("/msg/revoke_msg", revoke | {"userID": "u1"}, token=u1) is None
    assert_error(await wire.post("/msg/revoke_msg", revoke | {"userID": "u1"}, token=u1), 1404)
    assert_error(await wire.post("/msg/revoke_msg", revoke | {"userID": "u1", "seq": 9}, token=u1), 1004)
    assert_error(await wire.post("/msg/revoke_msg", revoke | {"userID": "u1", "seq": 0}, token=u1), 1001)


async def test_delete_msgs_for_oneself_or_for_everyone(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    await send(wire, admin)
    u1 = await wire.user_token(admin, "u1", 1)
    pull = {"seqRanges": [{"conversationID": "si_u1_u2", "begin": 1, "end": 5, "num": 5}]}
    mine = {"conversationID": "si_u1_u2", "seqs": [1], "userID": "u1", "deleteSyncOpt": {"IsSyncSelf": True}}
    await wire.ok("/msg/delete_msgs", mine, token=u1)

    async def pulled(user_id: str) -> list[tuple[int, int, str]]:
        data = await wire.ok("/msg/pull_msg_by_seq", pull | {"userID": user_id}, token=u1)
        return [(m["seq"], m["status"], m["sendID"]) for m in data["msgs"]["si_u1_u2"]["Msgs"]]

    # OpenIM answers a seq it will not show with a placeholder {seq, status 4 (deleted)}.
    assert await pulled("u1") == [(1, 4, ""), (2, 2, "u1")]
    assert await pulled("u2") == [(1, 2, "u1"), (2, 2, "u1")]
    everyone = mine | {"seqs": [2], "deleteSyncOpt": {"IsSyncOther": True}}
    await wire.ok("/msg/delete_msgs", everyone, token=u1)
    assert await pulled("u2") == [(1, 2, "u1"), (2, 4, "")]
    assert_error(await wire.post("/msg/delete_msgs", mine | {"userID": "u2"}, token=u1), 1002)


async def test_search_msg_has_no_admin_check_and_string_content(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    stranger = await wire.user_token(admin, "u4", 1)
    data = await wire.ok(
        "/msg/search_msg", {"sendID": "u1", "pagination": {"pageNumber": 1, "showNumber": 10}}, token=stranger
    )
    assert data["chatLogsNum"] == 1
    assert data["chatLogs"][0]["chatLog"]["content"] == '{"content":"hello"}'
    assert_error(await wire.post("/msg/search_msg", {"sendTime": "2025-13-45"}, token=stranger), 1001)


# -- groups -----------------------------------------------------------------------------------------


async def test_create_group_rules(wire: Wire, admin: str) -> None:
    u1 = await wire.user_token(admin, "u1", 1)
    base = {"ownerUserID": "u1", "memberUserIDs": ["u2"], "groupInfo": {"groupName": "G", "groupType": 2}}
    assert_error(await wire.post("/group/create_group", base | {"groupInfo": {"groupType": 0}}, token=u1), 1001)
    assert_error(await wire.post("/group/create_group", base | {"ownerUserID": "u2"}, token=u1), 1002)
    assert_error(await wire.post("/group/create_group", base | {"memberUserIDs": ["ghost"]}, token=u1), 1101)
    assert_error(await wire.post("/group/create_group", base | {"memberUserIDs": ["u2", "u2"]}, token=u1), 1001)
    info = (await wire.ok("/group/create_group", base, token=u1))["groupInfo"]
    assert info["groupType"] == 2
    assert info["groupID"].isdigit()
    assert info["memberCount"] == 2
    by_admin = (await wire.ok("/group/create_group", base, token=admin))["groupInfo"]
    assert by_admin["memberCount"] == 3, "quirk: the operator is counted"
    duplicate = base | {"groupInfo": {"groupID": info["groupID"], "groupType": 2}}
    assert_error(await wire.post("/group/create_group", duplicate, token=u1), 1202)


async def test_group_reads(wire: Wire, admin: str) -> None:
    group_id = await group(wire, admin)
    u2, u4 = await wire.user_token(admin, "u2", 1), await wire.user_token(admin, "u4", 1)
    assert_error(await wire.post("/group/get_groups_info", {"groupIDs": []}, token=u2), 1001)
    infos = await wire.ok("/group/get_groups_info", {"groupIDs": [group_id, "404"]}, token=u4)
    assert [g["groupID"] for g in infos["groupInfos"]] == [group_id]
    page = {"pagination": {"pageNumber": 1, "showNumber": 10}}
    joined = await wire.ok("/group/get_joined_group_list", page | {"fromUserID": "u2"}, token=u2)
    assert joined["total"] == 1
    assert_error(await wire.post("/group/get_joined_group_list", page | {"fromUserID": "u2"}, token=u4), 1002)
    bad_page = {"pagination": {"pageNumber": 0, "showNumber": 10}, "fromUserID": "u2"}
    assert_error(await wire.post("/group/get_joined_group_list", bad_page, token=u2), 1001)
    members = await wire.ok("/group/get_group_member_list", page | {"groupID": group_id}, token=u4)
    assert members["total"] == 3, "no membership check"
    assert {m["roleLevel"] for m in members["members"]} == {100, 20}
    listed = await wire.ok("/group/get_groups", page, token=u4)
    assert listed["groups"][0]["groupOwnerUserID"] == "u1"


async def test_kick_quit_invite_and_dismiss_rules(wire: Wire, admin: str) -> None:
    group_id = await group(wire, admin)
    u1, u2 = await wire.user_token(admin, "u1", 1), await wire.user_token(admin, "u2", 1)
    kick = {"groupID": group_id, "kickedUserIDs": ["u3"], "reason": ""}
    assert_error(await wire.post("/group/kick_group", kick, token=u2), 1002)
    assert_error(await wire.post("/group/kick_group", kick | {"kickedUserIDs": ["u1"]}, token=u2), 1001)
    assert_error(await wire.post("/group/kick_group", kick | {"kickedUserIDs": ["u4"]}, token=u1), 1101)
    assert await wire.ok("/group/kick_group", kick, token=u1) is None
    assert_error(await wire.post("/group/quit_group", {"groupID": group_id, "userID": ""}, token=u1), 1002)
    assert_error(await wire.post("/group/quit_group", {"groupID": group_id, "userID": "u1"}, token=u2), 1002)
    assert await wire.ok("/group/quit_group", {"groupID": group_id, "userID": ""}, token=u2) is None
    assert_error(await wire.post("/group/quit_group", {"groupID": group_id, "userID": ""}, token=u2), 1004)
    invite = {"groupID": group_id, "invitedUserIDs": ["ghost"], "reason": ""}
    assert_error(await wire.post("/group/invite_user_to_group", invite, token=u1), 1004)
    assert_error(await wire.post("/group/invite_user_to_group", invite | {"invitedUserIDs": ["u4"]}, token=u2), 1004)
    assert await wire.ok("/group/invite_user_to_group", invite | {"invitedUserIDs": ["u4"]}, token=u1) is None
    assert_error(await wire.post("/group/dismiss_group", {"groupID": group_id}, token=u2), 1002)
    assert await wire.ok("/group/dismiss_group", {"groupID": group_id}, token=u1) is None
    assert_error(await wire.post("/group/dismiss_group", {"groupID": group_id}, token=u1), 1204)


# -- conversations -----------------------------------------------------------------------------------


async def test_a_user_without_conversations_gets_1004(wire: Wire, admin: str) -> None:
    u4 = await wire.user_token(admin, "u4", 1)
    body = {"userID": "u4", "conversationIDs": [], "pagination": {"pageNumber": 1, "showNumber": 20}}
    assert_error(await wire.post("/conversation/get_sorted_conversation_list", body, token=u4), 1004)


async def test_sorted_conversation_list_has_capitalised_keys(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    u2 = await wire.user_token(admin, "u2", 1)
    body = {"userID": "u2", "conversationIDs": [], "pagination": {"pageNumber": 1, "showNumber": 20}}
    data = await wire.ok("/conversation/get_sorted_conversation_list", body, token=u2)
    assert data["conversationTotal"] == 1
    assert data["unreadTotal"] == 1
    [elem] = data["conversationElems"]
    assert "IsPinned" in elem
    assert "LatestMsgRecvTime" in elem["msgInfo"]


async def test_set_and_get_conversations(wire: Wire, admin: str) -> None:
    await send(wire, admin)
    u1 = await wire.user_token(admin, "u1", 1)
    assert_error(await wire.post("/conversation/get_conversations", {"ownerUserID": "u1"}, token=u1), 1001)
    update = {"userIDs": ["u1"], "conversation": {"conversationID": "si_u1_u2", "isPinned": True, "ex": None}}
    assert await wire.ok("/conversation/set_conversations", update, token=u1) is None
    data = await wire.ok(
        "/conversation/get_conversations", {"ownerUserID": "u1", "conversationIDs": ["si_u1_u2"]}, token=u1
    )
    [conversation] = data["conversations"]
    assert conversation["isPinned"] is True
    assert conversation["ex"] == "", "null leaves a wrapper field unchanged"
