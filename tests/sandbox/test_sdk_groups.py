"""Groups and friends in the sandbox: the official OpenIM SDK (@openim/client-sdk 0.0.14, in Node)
driving them, asserted on what the SDK reports (its events and return values), and the v3.8.3
rules those flows rest on, frame by frame and route by route."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import aiohttp
import orjson
import pytest

from messenger_gw.protocol import msg_pb2, sdkws_pb2
from messenger_gw.sandbox import Sandbox
from tests.conftest import Wire, assert_error
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures
from tests.sandbox.test_gateway import Client, connect, data_of, session  # noqa: F401 - fixtures


@pytest.fixture
async def trio(im: IM) -> IM:  # noqa: F811 - the imported fixture
    await im.register("alice", "bob", "carol")
    return im


# -- the SDK ----------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_group_made_in_the_sdk_carries_messages_lists_its_members_and_drops_who_quits(trio: IM) -> None:
    result = await run_scenario("groups.mjs", {u: await trio.login(u) for u in ("alice", "bob", "carol")})
    assert result["failures"] == []
    assert result["created"] == {"ok": True, "groupName": "trio", "ownerUserID": "alice", "memberCount": 3}
    assert result["joined"] == [{"groupName": "trio", "ownerUserID": "alice"}] * 3, "OnJoinedGroupAdded for all"
    assert len(result["bobGroups"]) == 1
    assert result["sent"] == {"ok": True, "sessionType": 3}
    assert result["members"] == [
        {"userID": "alice", "roleLevel": 100, "nickname": "Alice"},
        {"userID": "bob", "roleLevel": 20, "nickname": "Bob"},
        {"userID": "carol", "roleLevel": 20, "nickname": "Carol"},
    ]
    assert result["quit"] == {"ok": True, "errCode": 0}
    assert [m["userID"] for m in result["membersAfterQuit"]] == ["alice", "bob"]
    assert result["carolGroups"] == []
    assert result["sentLater"]["ok"]
    assert result["received"] == {
        "alice": [],  # her own messages' echoes stay silent
        "bob": ["hello trio", "without carol"],
        "carol": ["hello trio"],
    }
    assert result["groupEvents"] == {
        "alice": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnGroupMemberDeleted:carol"],
        "bob": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnGroupMemberDeleted:carol"],
        "carol": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnJoinedGroupDeleted"],
    }
    assert result["unhandled"] == []


@pytest.mark.slow
async def test_a_friend_request_accepted_in_the_sdk_shows_in_both_friend_lists(trio: IM) -> None:
    result = await run_scenario("friends.mjs", {u: await trio.login(u) for u in ("alice", "bob")})
    assert result["failures"] == []
    assert result["before"] == [{"result": 0, "userID": "bob"}]
    assert result["added"] == {"ok": True, "errCode": 0}
    pending = {"fromUserID": "alice", "toUserID": "bob", "reqMsg": "hi bob, alice here", "handleResult": 0}
    assert result["application"] == pending, "bob's OnFriendApplicationAdded"
    assert result["aliceApplication"] == pending
    assert result["inbox"] == [pending]
    assert result["outbox"] == [pending]
    assert result["accepted"] == {"ok": True, "errCode": 0}
    assert result["aliceAccepted"] == pending | {"handleResult": 1}
    assert result["bobAdded"] == {"userID": "alice", "nickname": "Alice", "ownerUserID": "bob"}
    assert result["aliceFriends"] == [{"userID": "bob", "nickname": "Bob", "ownerUserID": "alice"}]
    assert result["bobFriends"] == [{"userID": "alice", "nickname": "Alice", "ownerUserID": "bob"}]
    assert result["after"] == [{"result": 1, "userID": "bob"}]
    # Each kind in the order it first came: an application can be raised twice, by the notification
    # and by the SDK's own sync of applications when the two cross on a slow machine.
    events = {user: list(dict.fromkeys(kinds)) for user, kinds in result["friendEvents"].items()}
    assert events == {
        # The SDK never syncs the applicant's friends on the approval (see friends.mjs).
        "alice": ["OnFriendApplicationAdded", "OnFriendApplicationAccepted"],
        "bob": ["OnFriendApplicationAdded", "OnFriendApplicationAccepted", "OnFriendAdded"],
    }
    assert result["unhandled"] == []


# -- notifications, frame by frame ------------------------------------------------------------------------


def pushed(frame: dict[str, Any]) -> tuple[str, str, sdkws_pb2.MsgData]:
    """A 2001's one message: whether it came as a message or a notification, its conversation, it."""
    assert frame["reqIdentifier"] == 2001, frame
    push = sdkws_pb2.PushMessages.FromString(base64.b64decode(frame["data"]))
    [(kind, entries)] = [(k, e) for k, e in (("msgs", push.msgs), ("notificationMsgs", push.notificationMsgs)) if e]
    [(conversation_id, entry)] = entries.items()
    [msg] = entry.Msgs
    return kind, conversation_id, msg


def tips(msg: sdkws_pb2.MsgData) -> dict[str, Any]:
    """What the SDK reads of a notification: ``JSON.parse(JSON.parse(content).detail)``."""
    value: dict[str, Any] = orjson.loads(orjson.loads(msg.content)["detail"])
    return value


async def nothing_more(client: Client) -> None:
    with pytest.raises(TimeoutError):
        await client.ws.receive(timeout=0.3)


async def tokens(sandboxed: IM, *users: str) -> dict[str, str]:
    """REST tokens (platform 1), which leave the users' WebSocket logins (platform 5) alone."""
    return {u: await sandboxed.token(u, 1) for u in users}


async def new_group(wire: Wire, token: str, *members: str, **info: Any) -> str:
    body = {
        "ownerUserID": "alice",
        "memberUserIDs": list(members),
        "groupInfo": {"groupName": "G", "groupType": 2} | info,
    }
    group_id: str = (await wire.ok("/group/create_group", body, token=token))["groupInfo"]["groupID"]
    return group_id


async def test_a_new_group_reaches_its_members_as_a_first_message_and_a_notice(
    session: aiohttp.ClientSession,  # noqa: F811
    trio: IM,
) -> None:
    bob = await connect(session, trio, "bob")
    rest = await tokens(trio, "alice", "bob")
    group_id = await new_group(trio.wire, rest["alice"], "bob", "carol")
    kind, conversation_id, copy = pushed(await bob.push())
    assert (kind, conversation_id) == ("msgs", f"sg_{group_id}")
    assert (copy.contentType, copy.seq, copy.sendID, copy.msgFrom, copy.sessionType) == (1501, 1, "alice", 200, 3)
    kind, conversation_id, notice = pushed(await bob.push())
    assert (kind, conversation_id, notice.seq) == ("notificationMsgs", f"n_{group_id}", 0), "pushed, not stored"
    assert notice.options["isNotNotification"] is False
    created = tips(notice)
    assert created == tips(copy)
    assert (created["group"]["groupID"], created["group"]["memberCount"]) == (group_id, 3)
    assert [m["userID"] for m in created["memberList"]] == ["alice"], "quirk: the list stops at the operator"
    assert created["groupOwnerUser"]["nickname"] == "", "quirk: taken before the nicknames are filled in"
    assert created["opUser"]["nickname"] == "Alice"
    # The notice's member version is the log's: a sync from it finds nothing new.
    request = {"groupID": group_id, "version": created["groupMemberVersion"],
               "versionID": created["groupMemberVersionID"]}  # fmt: skip
    batch = await trio.wire.ok(
        "/group/get_incremental_group_members_batch", {"userID": "bob", "reqList": [request]}, token=rest["bob"]
    )
    assert batch["respList"][group_id] | {"versionID": ""} == {
        "version": created["groupMemberVersion"], "versionID": "", "full": False, "delete": None, "insert": None,
        "update": None, "group": None, "sortVersion": 0,
    }  # fmt: skip
    seqs = msg_pb2.GetConversationsHasReadAndMaxSeqResp.FromString(
        data_of(await bob.request(1006, msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID="bob").SerializeToString()))
    ).seqs
    assert seqs[f"sg_{group_id}"].maxSeq == 1, "the copy made bob's group conversation"


async def test_who_quits_hears_of_it_then_receives_and_reads_nothing_later(
    session: aiohttp.ClientSession,  # noqa: F811
    trio: IM,
) -> None:
    carol = await connect(session, trio, "carol")
    rest = await tokens(trio, "alice", "carol")
    group_id = await new_group(trio.wire, rest["alice"], "bob", "carol")
    first = await trio.wire.ok(
        "/group/get_incremental_group_members",
        {"groupID": group_id, "version": 0, "versionID": ""},
        token=rest["alice"],
    )
    assert first["full"]
    assert first["insert"] is None
    assert first["group"]["memberCount"] == 3
    await carol.push(), await carol.push()
    assert await trio.wire.ok("/group/quit_group", {"groupID": group_id}, token=rest["carol"]) is None
    [copy, notice] = [pushed(await carol.push()) for _ in range(2)]
    assert (copy[1], copy[2].contentType, copy[2].seq) == (f"sg_{group_id}", 1504, 2)
    quit_tips = tips(notice[2])
    assert (quit_tips["quitUser"]["userID"], quit_tips["group"]["memberCount"]) == ("carol", 2)
    text = {"sendID": "alice", "groupID": group_id, "contentType": 101, "sessionType": 3, "content": {"content": "hi"}}
    assert (await trio.wire.post("/msg/send_msg", text, token=trio.admin))["errCode"] == 0
    await nothing_more(carol)
    asked = msg_pb2.GetConversationsHasReadAndMaxSeqReq(userID="carol").SerializeToString()
    seqs = msg_pb2.GetConversationsHasReadAndMaxSeqResp.FromString(data_of(await carol.request(1006, asked))).seqs
    assert seqs[f"sg_{group_id}"].maxSeq == 2, "frozen at the notice of her quitting"
    ranges = sdkws_pb2.PullMessageBySeqsReq(
        userID="carol", seqRanges=[sdkws_pb2.SeqRange(conversationID=f"sg_{group_id}", begin=1, end=10, num=10)]
    )
    pulled = sdkws_pb2.PullMessageBySeqsResp.FromString(data_of(await carol.request(1002, ranges.SerializeToString())))
    assert [m.seq for m in pulled.msgs[f"sg_{group_id}"].Msgs] == [1, 2]
    since = {"groupID": group_id, "version": first["version"], "versionID": first["versionID"]}
    batch = await trio.wire.ok("/group/get_incremental_group_members_batch", {"userID": "alice", "reqList": [since]},
                               token=rest["alice"])  # fmt: skip
    synced = batch["respList"][group_id]
    assert (synced["full"], synced["delete"], synced["insert"], synced["update"]) == (False, ["carol"], None, None)
    assert synced["group"]["memberCount"] == 2


async def test_a_dismissed_group_loses_its_members_once_its_notice_is_pushed(
    session: aiohttp.ClientSession,  # noqa: F811
    trio: IM,
    sandbox: Sandbox,
) -> None:
    bob = await connect(session, trio, "bob")
    rest = await tokens(trio, "alice", "bob")
    group_id = await new_group(trio.wire, rest["alice"], "bob")
    await bob.push(), await bob.push()
    assert_error(await trio.wire.post("/group/dismiss_group", {"groupID": group_id}, token=rest["bob"]), 1002)
    assert await trio.wire.ok("/group/dismiss_group", {"groupID": group_id}, token=rest["alice"]) is None
    assert set(sandbox.members[group_id]) == {"alice", "bob"}, "the route answers first"
    [copy, notice] = [pushed(await bob.push()) for _ in range(2)]
    assert (copy[2].contentType, notice[0]) == (1511, "notificationMsgs")
    assert tips(notice[2])["group"]["status"] == 0, "the group as it was"
    assert sandbox.members[group_id] == {}
    joined = await trio.wire.ok("/group/get_full_join_group_ids", {"userID": "bob", "idHash": 0}, token=rest["bob"])
    assert (joined["groupIDs"], joined["equal"]) == (None, True), "nothing, and the hash of nothing is 0"
    batch = {"userID": "bob", "reqList": [{"groupID": group_id, "version": 0, "versionID": ""}]}
    assert_error(await trio.wire.post("/group/get_incremental_group_members_batch", batch, token=rest["bob"]), 500)


# -- group rules --------------------------------------------------------------------------------------------


async def test_join_group_joins_whoever_inviter_user_id_names(trio: IM, sandbox: Sandbox) -> None:
    rest = await tokens(trio, "alice", "bob", "carol")
    open_group = await new_group(trio.wire, rest["alice"], needVerification=2)
    join = {"groupID": open_group, "joinSource": 3, "reqMessage": "", "inviterUserID": "carol"}
    assert await trio.wire.ok("/group/join_group", join, token=rest["bob"]) is None, "v3.8.3's hole"
    assert set(sandbox.members[open_group]) == {"alice", "carol"}
    assert_error(await trio.wire.post("/group/join_group", join, token=rest["bob"]), 1001)  # already a member
    closed = await new_group(trio.wire, rest["alice"])
    asked = {"groupID": closed, "joinSource": 3, "reqMessage": "let me in", "inviterUserID": "bob"}
    assert await trio.wire.ok("/group/join_group", asked, token=rest["bob"]) is None
    assert "bob" not in sandbox.members[closed], "a request, not a member"
    request = {"groupID": closed, "userID": "bob"}
    assert_error(await trio.wire.post("/group/get_specified_user_group_request_info", request, token=rest["carol"]),
                 1002)  # fmt: skip
    own = await trio.wire.ok("/group/get_specified_user_group_request_info", request, token=rest["bob"])
    assert own["total"] == 1
    assert own["groupRequests"][0]["reqMsg"] == "let me in"
    answer = {"groupID": closed, "fromUserID": "bob", "handledMsg": "ok", "handleResult": 1}
    assert_error(await trio.wire.post("/group/group_application_response", answer, token=rest["carol"]), 1004)
    assert await trio.wire.ok("/group/group_application_response", answer, token=rest["alice"]) is None
    assert_error(await trio.wire.post("/group/group_application_response", answer, token=rest["alice"]), 1206)
    assert sandbox.members[closed]["bob"]["roleLevel"] == 20
    page = {"pagination": {"pageNumber": 1, "showNumber": 10}}
    mine = await trio.wire.ok(
        "/group/get_user_req_group_applicationList", page | {"userID": "bob"}, token=rest["carol"]
    )
    assert [(r["groupInfo"]["groupID"], r["handleResult"]) for r in mine["groupRequests"]] == [(closed, 1)]


async def test_only_the_owner_transfers_and_the_old_owner_takes_the_new_ones_role(trio: IM, sandbox: Sandbox) -> None:
    rest = await tokens(trio, "alice", "bob")
    group_id = await new_group(trio.wire, rest["alice"], "bob", "carol")
    transfer = {"groupID": group_id, "oldOwnerUserID": "alice", "newOwnerUserID": "bob"}
    assert_error(await trio.wire.post("/group/transfer_group", transfer, token=rest["bob"]), 1002)
    assert_error(await trio.wire.post("/group/transfer_group", transfer | {"newOwnerUserID": "alice"},
                                      token=rest["alice"]), 1001)  # fmt: skip
    assert await trio.wire.ok("/group/transfer_group", transfer, token=rest["alice"]) is None
    assert {u: m["roleLevel"] for u, m in sandbox.members[group_id].items()} == {"alice": 20, "bob": 100, "carol": 20}
    [info] = (await trio.wire.ok("/group/get_groups_info", {"groupIDs": [group_id]}, token=rest["alice"]))["groupInfos"]
    assert info["ownerUserID"] == "bob"
    assert await trio.wire.ok("/group/quit_group", {"groupID": group_id}, token=rest["alice"]) is None


async def test_a_group_made_by_an_app_admin_counts_the_admin_only_in_its_answer(trio: IM) -> None:
    body = {"ownerUserID": "alice", "memberUserIDs": ["bob"], "groupInfo": {"groupType": 2, "status": 3,
                                                                           "creatorUserID": "carol"}}  # fmt: skip
    made = (await trio.wire.ok("/group/create_group", body, token=trio.admin))["groupInfo"]
    assert made["memberCount"] == 3, "quirk: the operator is counted"
    assert (made["status"], made["creatorUserID"]) == (3, "carol"), "taken as sent"
    [info] = (await trio.wire.ok("/group/get_groups_info", {"groupIDs": [made["groupID"]]}, token=trio.admin))[
        "groupInfos"
    ]
    assert info["memberCount"] == 2, "read from the members"


# -- friends ----------------------------------------------------------------------------------------------


async def test_friend_requests_and_answers_follow_v3_8_3(trio: IM) -> None:
    rest = await tokens(trio, "alice", "bob", "carol")
    ask = {"fromUserID": "alice", "toUserID": "bob", "reqMsg": "hi", "ex": ""}
    assert_error(await trio.wire.post("/friend/add_friend", ask, token=rest["carol"]), 1002)
    assert_error(await trio.wire.post("/friend/add_friend", ask | {"toUserID": "alice"}, token=rest["alice"]), 1301)
    assert_error(await trio.wire.post("/friend/add_friend", ask | {"toUserID": "ghost"}, token=rest["alice"]), 1004)
    assert await trio.wire.ok("/friend/add_friend", ask, token=rest["alice"]) is None
    answer = {"fromUserID": "alice", "toUserID": "bob", "handleResult": -1, "handleMsg": "no"}
    assert_error(await trio.wire.post("/friend/add_friend_response", answer, token=rest["carol"]), 1002)
    assert_error(await trio.wire.post("/friend/add_friend_response", answer | {"handleResult": 0},
                                      token=rest["bob"]), 1001)  # fmt: skip
    assert await trio.wire.ok("/friend/add_friend_response", answer, token=rest["bob"]) is None
    assert_error(await trio.wire.post("/friend/add_friend_response", answer, token=rest["bob"]), 500)
    pair = {"fromUserID": "bob", "toUserID": "alice"}  # any pair, either way round, by anyone
    [refused] = (await trio.wire.ok("/friend/get_designated_friend_apply", pair, token=rest["carol"]))["friendRequests"]
    assert (refused["fromUserID"], refused["handleResult"], refused["handleMsg"]) == ("alice", -1, "no")
    assert await trio.wire.ok("/friend/add_friend", ask | {"reqMsg": "again"}, token=rest["alice"]) is None
    agree = answer | {"handleResult": 1, "handleMsg": "yes"}
    assert await trio.wire.ok("/friend/add_friend_response", agree, token=rest["bob"]) is None
    assert_error(await trio.wire.post("/friend/add_friend_response", agree, token=rest["bob"]), 1001)
    assert_error(await trio.wire.post("/friend/add_friend", ask, token=rest["alice"]), 1304)
    page = {"pagination": {"pageNumber": 1, "showNumber": 10}}
    inbox = await trio.wire.ok("/friend/get_friend_apply_list", page | {"userID": "bob"}, token=rest["bob"])
    assert [(r["reqMsg"], r["handleResult"]) for r in inbox["FriendRequests"]] == [("again", 1)], "capital F"
    listed = await trio.wire.ok("/friend/get_friend_list", page | {"userID": "bob"}, token=rest["bob"])
    [alice] = listed["friendsInfo"]
    assert alice["friendUser"] == {"userID": "alice", "nickname": "Alice", "faceURL": "", "ex": "", "createTime": 0,
                                   "appMangerLevel": 0, "globalRecvMsgOpt": 0}  # fmt: skip
    assert alice["createTime"] < 10**11, "seconds"
    assert (alice["addSource"], alice["operatorUserID"]) == (2, "alice")


async def test_deleting_a_friend_removes_the_owners_side_only(trio: IM) -> None:
    rest = await tokens(trio, "alice", "bob", "carol")
    await trio.wire.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"}, token=rest["alice"])
    answer = {"fromUserID": "alice", "toUserID": "bob", "handleResult": 1}
    await trio.wire.ok("/friend/add_friend_response", answer, token=rest["bob"])
    is_friend = {"userID1": "alice", "userID2": "bob"}
    both = {"inUser1Friends": True, "inUser2Friends": True}
    assert await trio.wire.ok("/friend/is_friend", is_friend, token=rest["carol"]) == both, "anyone may ask"
    assert await trio.wire.ok("/friend/delete_friend", {"ownerUserID": "alice", "friendUserID": "bob"},
                              token=rest["alice"]) is None  # fmt: skip
    assert await trio.wire.ok("/friend/is_friend", is_friend, token=rest["alice"]) == both | {"inUser1Friends": False}
    assert await trio.wire.ok("/friend/delete_friend", {"ownerUserID": "alice", "friendUserID": "carol"},
                              token=rest["alice"]) is None, "no friend, deleted all the same"  # fmt: skip


async def test_update_friends_changes_any_owners_friends(trio: IM, sandbox: Sandbox) -> None:
    rest = await tokens(trio, "alice", "bob", "carol")
    await trio.wire.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"}, token=rest["alice"])
    await trio.wire.ok("/friend/add_friend_response", {"fromUserID": "alice", "toUserID": "bob", "handleResult": 1},
                       token=rest["bob"])  # fmt: skip
    first = await trio.wire.ok("/friend/get_incremental_friends", {"userID": "alice", "version": 0, "versionID": ""},
                               token=rest["alice"])  # fmt: skip
    assert first["full"]
    assert first["insert"] is None
    update = {"ownerUserID": "alice", "friendUserIDs": ["bob"], "remark": "B", "isPinned": True}
    assert await trio.wire.ok("/friend/update_friends", update, token=rest["carol"]) is None, "v3.8.3's hole"
    assert sandbox.friends["alice"]["bob"]["remark"] == "B"
    since = {"userID": "alice", "version": first["version"], "versionID": first["versionID"]}
    changed = await trio.wire.ok("/friend/get_incremental_friends", since, token=rest["alice"])
    assert (changed["full"], changed["insert"], changed["delete"]) == (False, None, None)
    assert [(f["friendUser"]["userID"], f["remark"], f["isPinned"]) for f in changed["update"]] == [("bob", "B", True)]
    assert changed["sortVersion"] == changed["version"], "pinning changes the order"
    assert_error(await trio.wire.post("/friend/get_incremental_friends", since, token=rest["carol"]), 1002)


async def test_full_friend_ids_answer_their_hash_and_no_ids_when_the_caller_has_it(trio: IM) -> None:
    rest = await tokens(trio, "alice", "bob")
    await trio.wire.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"}, token=rest["alice"])
    await trio.wire.ok("/friend/add_friend_response", {"fromUserID": "alice", "toUserID": "bob", "handleResult": 1},
                       token=rest["bob"])  # fmt: skip
    full = await trio.wire.ok("/friend/get_full_friend_user_ids", {"userID": "alice", "idHash": 0}, token=rest["bob"])
    assert (full["equal"], full["userIDs"]) == (False, ["bob"])
    # hashutil.IdHash: the first 8 bytes, big-endian, of the MD5 of Go's JSON of the list.
    assert full["version"] == int.from_bytes(hashlib.md5(b'["bob"]', usedforsecurity=False).digest()[:8], "big")
    again = {"userID": "alice", "idHash": full["version"]}
    assert await trio.wire.ok("/friend/get_full_friend_user_ids", again, token=rest["alice"]) == full | {
        "equal": True,
        "userIDs": None,
    }


async def test_the_blacklist_refuses_a_second_entry_and_times_its_two_lists_differently(trio: IM) -> None:
    rest = await tokens(trio, "alice", "bob")
    black = {"ownerUserID": "alice", "blackUserID": "bob", "ex": ""}
    assert_error(await trio.wire.post("/friend/add_black", black, token=rest["bob"]), 1002)
    assert await trio.wire.ok("/friend/add_black", black, token=rest["alice"]) is None
    assert_error(await trio.wire.post("/friend/add_black", black, token=rest["alice"]), 500)
    page = {"pagination": {"pageNumber": 1, "showNumber": 10}}
    [listed] = (await trio.wire.ok("/friend/get_black_list", page | {"userID": "alice"}, token=rest["alice"]))["blacks"]
    specified = {"ownerUserID": "alice", "userIDList": ["bob"]}
    [named] = (await trio.wire.ok("/friend/get_specified_blacks", specified, token=rest["alice"]))["blacks"]
    assert named["createTime"] == listed["createTime"] * 1000, "ms there, seconds here"
    assert named["blackUserInfo"] == {"userID": "bob", "nickname": "Bob", "faceURL": "", "ex": ""}
    text = {"sendID": "bob", "recvID": "alice", "contentType": 101, "sessionType": 1, "content": {"content": "hi"}}
    assert_error(await trio.wire.post("/msg/send_msg", text, token=trio.admin), 1302)
    assert await trio.wire.ok("/friend/remove_black", black, token=rest["alice"]) is None
    assert (await trio.wire.post("/msg/send_msg", text, token=trio.admin))["errCode"] == 0
    assert await trio.wire.ok("/friend/get_specified_blacks", specified, token=rest["alice"]) == {
        "blacks": [],
        "total": 0,
    }, "[] here, where Go makes the list"


async def test_set_group_info_ex_by_a_manager_and_its_empty_name_that_changes_nothing(
    session: aiohttp.ClientSession,  # noqa: F811
    trio: IM,
    sandbox: Sandbox,
) -> None:
    bob = await connect(session, trio, "bob")
    rest = await tokens(trio, "alice", "bob")
    group_id = await new_group(trio.wire, rest["alice"], "bob")
    await bob.push(), await bob.push()
    assert_error(await trio.wire.post("/group/set_group_info_ex", {"groupID": group_id, "groupName": "B"},
                                      token=rest["bob"]), 1002)  # fmt: skip
    unchanged = {"groupID": group_id, "groupName": "", "introduction": "ignored"}
    assert await trio.wire.ok("/group/set_group_info_ex", unchanged, token=rest["alice"]) is None
    assert sandbox.groups[group_id]["introduction"] == ""
    renamed = {"groupID": group_id, "groupName": "Club", "introduction": None}
    assert await trio.wire.ok("/group/set_group_info_ex", renamed, token=rest["alice"]) is None
    [copy, notice] = [pushed(await bob.push()) for _ in range(2)]
    assert (copy[2].contentType, tips(notice[2])["group"]["groupName"]) == (1520, "Club")
    await nothing_more(bob)  # a name alone is no 1502


async def test_anyone_on_the_websocket_can_empty_a_group_with_a_dismissal_notice(
    session: aiohttp.ClientSession,  # noqa: F811
    trio: IM,
    sandbox: Sandbox,
) -> None:
    rest = await tokens(trio, "alice")
    group_id = await new_group(trio.wire, rest["alice"], "bob")
    carol = await connect(session, trio, "carol")  # no member of it
    forged = sdkws_pb2.MsgData(
        sendID="carol", groupID=group_id, clientMsgID="forged", sessionType=3, msgFrom=200, contentType=1511,
        content=orjson.dumps({"detail": "{}"}), options={"isNotNotification": False}, createTime=1,
    )  # fmt: skip
    reply = await carol.request(1003, forged.SerializeToString())
    assert reply["errCode"] == 0, "a notification type skips the membership check (v3.8.3's hole)"
    await asyncio.sleep(0.1)  # the push service acts on it once it is pushed
    assert sandbox.members[group_id] == {}
    assert sandbox.groups[group_id]["status"] == 2
