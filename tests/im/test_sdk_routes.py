"""The official SDK's REST surface through /im: each route the table adds refuses another user's data
before OpenIM (proven at a recording upstream), and reaches OpenIM bound to the caller when it is
the caller's own; the routes the table leaves out are never forwarded."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from messenger_gw.im.route_policy import Route, RouteTable
from messenger_gw.protocol import jssdk_pb2
from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, Gateway, Recorded, Recorder, StartGateway
from tests.im.test_proxy import im

PUBLIC_IM_URL = "https://chat.example.com/im"
PAGE = {"pageNumber": 1, "showNumber": 10}
MINE, THEIRS = "group-mine", "group-theirs"  # alice and bob's; bob and carol's
LOOKUP = "/group/get_group_members_info"  # also how the gateway learns who is in a group
TABLE = {route.path: route for route in RouteTable.load()}
PROXY_PAGE = Path(__file__).resolve().parents[2] / "docs" / "im-proxy.md"


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(PHASE="4", PUBLIC_IM_URL=PUBLIC_IM_URL)


@pytest.fixture
async def alice(gateway: Gateway, sandbox: Sandbox) -> AsyncIterator[GatewayClient]:
    for user in ("bob", "carol", "dave"):
        sandbox.add_user(user, nickname=user.title())
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        for group_id, owner, member in ((MINE, "alice", "bob"), (THEIRS, "bob", "carol")):
            make_group(sandbox, group_id, owner, member)
        yield client


def make_group(sandbox: Sandbox, group_id: str, owner: str, member: str, need_verification: int = 0) -> None:
    sandbox.groups[group_id] = {
        "groupID": group_id, "groupName": group_id, "notification": "", "introduction": "", "faceURL": "",
        "ownerUserID": owner, "createTime": 0, "memberCount": 2, "ex": "", "status": 0, "creatorUserID": owner,
        "groupType": 2, "needVerification": need_verification, "lookMemberInfo": 0, "applyMemberFriend": 0,
        "notificationUpdateTime": 0, "notificationUserID": "",
    }  # fmt: skip
    base = {"groupID": group_id, "joinTime": 0, "nickname": "", "faceURL": "", "appMangerLevel": 0, "joinSource": 2,
            "operatorUserID": owner, "ex": "", "muteEndTime": 0, "inviterUserID": ""}  # fmt: skip
    sandbox.add_members(
        group_id, [base | {"userID": owner, "roleLevel": 100}, base | {"userID": member, "roleLevel": 20}]
    )


def from_the_client(recorder: Recorder, sandbox: Sandbox, path: str) -> list[Recorded]:
    """What reached OpenIM on ``path`` with a user's token: not the gateway's own admin lookups."""
    return [r for r in recorder.to(path) if not sandbox.verify_token(r.headers["token"])[0].is_admin]


async def answered(request: web.Request) -> web.Response:
    """OpenIM's success envelope: what these tests check is what the gateway let through."""
    return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {}})


def form_data_id(name: str, key: str) -> str:
    """OpenIM's form-data upload ID: base64 without padding of the JSON it made (unsigned)."""
    mate = {"name": name, "size": 5, "contentType": "image/png", "group": "", "key": key}
    return base64.b64encode(orjson.dumps(mate)).decode().rstrip("=")


BOBS_UPLOAD_KEY = "openim/direct/20250114/bob/" + "ab" * 16 + ".png"
ALICES_UPLOAD_KEY = "openim/direct/20250114/alice/" + "cd" * 16 + ".png"

# Every route the SDK surface added, with a body that reaches for another user's data: each is
# refused before OpenIM. The open (NONE) routes of openim-route-surface.md are marked.
ANOTHER_USERS = [
    ("/user/set_global_msg_recv_opt", {"userID": "bob", "globalRecvMsgOpt": 2}, 40303),  # NONE, a write
    ("/user/subscribe_users_status", {"userID": "bob", "userIDs": ["carol"], "genre": 1}, 40303),
    ("/user/get_subscribe_users_status", {"userID": "bob"}, 40303),
    ("/friend/add_friend", {"fromUserID": "bob", "toUserID": "carol", "reqMsg": "hi"}, 40303),
    ("/friend/add_friend_response", {"fromUserID": "carol", "toUserID": "bob", "handleResult": 1}, 40303),
    ("/friend/get_designated_friend_apply", {"fromUserID": "bob", "toUserID": "carol"}, 40303),  # NONE
    ("/friend/get_designated_friend_apply", {"FromUserID": "bob", "toUserID": "carol"}, 40303),  # NONE
    ("/friend/get_friend_apply_list", {"userID": "bob", "pagination": PAGE}, 40303),
    ("/friend/get_self_friend_apply_list", {"userID": "bob", "pagination": PAGE}, 40303),
    ("/friend/get_friend_list", {"userID": "bob", "pagination": PAGE}, 40303),
    ("/friend/get_designated_friends", {"ownerUserID": "bob", "friendUserIDs": ["carol"]}, 40303),  # NONE
    ("/friend/is_friend", {"userID1": "bob", "userID2": "carol"}, 40303),  # NONE
    ("/friend/delete_friend", {"ownerUserID": "bob", "friendUserID": "carol"}, 40303),
    ("/friend/update_friends", {"ownerUserID": "bob", "friendUserIDs": ["carol"], "remark": "x"}, 40303),  # NONE
    ("/friend/add_black", {"ownerUserID": "bob", "blackUserID": "carol"}, 40303),
    ("/friend/remove_black", {"ownerUserID": "bob", "blackUserID": "carol"}, 40303),
    ("/friend/get_black_list", {"userID": "bob", "pagination": PAGE}, 40303),
    ("/friend/get_specified_blacks", {"ownerUserID": "bob", "userIDList": ["carol"]}, 40303),
    ("/friend/get_incremental_friends", {"userID": "bob", "version": 0, "versionID": ""}, 40303),
    ("/friend/get_full_friend_user_ids", {"userID": "bob", "idHash": 0}, 40303),  # NONE
    ("/conversation/get_incremental_conversations", {"userID": "bob", "version": 0, "versionID": ""}, 40303),  # NONE
    ("/conversation/get_not_notify_conversation_ids", {"userID": "bob"}, 40303),  # NONE
    ("/group/get_incremental_join_groups", {"userID": "bob", "version": 0, "versionID": ""}, 40303),
    ("/group/get_full_join_group_ids", {"userID": "bob", "idHash": 0}, 40303),  # NONE
    ("/group/get_incremental_group_members_batch", {"reqList": [{"groupID": MINE}, {"groupID": THEIRS}]}, 40304),
    ("/group/get_incremental_group_members_batch", {"userID": "bob", "reqList": [{"groupID": MINE}]}, 40303),
    ("/group/get_group_members_info", {"groupID": THEIRS, "userIDs": ["carol"]}, 40304),  # NONE
    ("/group/get_full_group_member_user_ids", {"groupID": THEIRS, "idHash": 0}, 40304),  # NONE
    ("/group/join_group", {"groupID": THEIRS, "inviterUserID": "dave", "joinSource": 3}, 40303),  # NONE, a write
    ("/group/transfer_group", {"groupID": THEIRS, "oldOwnerUserID": "bob", "newOwnerUserID": "carol"}, 40303),
    ("/group/get_recv_group_applicationList", {"fromUserID": "bob", "pagination": PAGE}, 40303),  # NONE
    ("/group/get_user_req_group_applicationList", {"userID": "bob", "pagination": PAGE}, 40303),  # NONE
    ("/third/fcm_update_token", {"account": "bob", "platformID": 5, "fcmToken": "t", "expireTime": 0}, 40303),  # NONE
    ("/third/fcm_update_token", {"platformID": 1, "fcmToken": "t", "expireTime": 0}, 40303),  # another device's
    ("/third/set_app_badge", {"userID": "bob", "appUnreadCount": 3}, 40303),  # NONE
    ("/object/initiate_multipart_upload", {"name": "bob/x.png", "hash": "0" * 32, "size": 5}, 40303),
    ("/object/initiate_multipart_upload", {"name": "alice", "hash": "0" * 32, "size": 5}, 40303),
    ("/object/complete_multipart_upload", {"name": "bob/x.png", "uploadID": "x", "parts": ["y"]}, 40303),
    ("/object/initiate_form_data", {"name": "alice_/x.png", "size": 5}, 40303),
    ("/object/complete_form_data", {"id": form_data_id("bob/x.png", ALICES_UPLOAD_KEY)}, 40303),
    ("/object/complete_form_data", {"id": form_data_id("alice/x.png", BOBS_UPLOAD_KEY)}, 40303),
]


@pytest.mark.parametrize(("path", "body", "code"), ANOTHER_USERS)
async def test_another_users_data_is_refused_and_never_forwarded(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox, path: str, body: dict[str, Any], code: int
) -> None:
    if path != LOOKUP:  # the gateway asks it itself, with the admin token
        recorder.overrides[path] = answered
    status, reply, _ = await im(alice, "/im" + path, body)
    assert (status, reply["errCode"]) == (403, code)
    assert from_the_client(recorder, sandbox, path) == []


def test_every_route_with_a_body_rule_is_tried_with_another_users_data() -> None:
    tried = {path for path, _, _ in ANOTHER_USERS}
    # The rest have their own tests (tests/im/test_proxy.py) or act on the token's user in OpenIM.
    elsewhere = {"/msg/send_msg", "/msg/pull_msg_by_seq", "/msg/get_conversations_has_read_and_max_seq",
                 "/msg/revoke_msg", "/msg/delete_msgs", "/msg/clear_conversation_msg", "/msg/user_clear_all_msg",
                 "/msg/mark_conversation_as_read", "/user/update_user_info_ex", "/conversation/set_conversations",
                 "/conversation/get_sorted_conversation_list", "/conversation/get_conversations",
                 "/group/create_group", "/group/get_joined_group_list", "/group/get_group_member_list",
                 "/group/quit_group"}  # fmt: skip
    ruled = {path for path, route in TABLE.items() if _binds(route)}
    assert ruled - tried - elsewhere == set()


def _binds(route: Route) -> bool:
    return bool(route.bind or route.bind_any or route.bind_each or route.groups or route.conversations
                or route.object_names or route.form_data_ids)  # fmt: skip


OWN = [
    ("/user/set_global_msg_recv_opt", {"globalRecvMsgOpt": 2}, {"userID": "alice"}),
    ("/friend/get_designated_friend_apply", {"fromUserID": "bob", "toUserID": "alice"}, {"toUserID": "alice"}),
    ("/friend/get_designated_friend_apply", {"fromUserID": "alice", "toUserID": "bob"}, {"fromUserID": "alice"}),
    ("/friend/is_friend", {"userID2": "bob"}, {"userID1": "alice", "userID2": "bob"}),
    ("/friend/update_friends", {"friendUserIDs": ["bob"], "remark": "B"}, {"ownerUserID": "alice"}),
    ("/group/get_incremental_group_members_batch", {"reqList": [{"groupID": MINE, "version": 0, "versionID": ""}]},
     {"userID": "alice"}),
    ("/group/get_group_members_info", {"groupID": MINE, "userIDs": ["alice"]}, {"groupID": MINE}),
    ("/group/get_full_group_member_user_ids", {"groupID": MINE, "idHash": 0}, {"groupID": MINE}),
    ("/group/join_group", {"groupID": THEIRS, "joinSource": 3}, {"inviterUserID": "alice"}),
    ("/group/transfer_group", {"groupID": MINE, "newOwnerUserID": "bob"}, {"oldOwnerUserID": "alice"}),
    ("/third/fcm_update_token", {"fcmToken": "t", "expireTime": 0}, {"account": "alice", "platformID": 5}),
    ("/third/set_app_badge", {"appUnreadCount": 3}, {"userID": "alice"}),
    ("/object/initiate_multipart_upload", {"name": "alice/x.png", "hash": "0" * 32, "size": 5},
     {"name": "alice/x.png"}),
    ("/object/complete_form_data", {"id": form_data_id("alice/x.png", ALICES_UPLOAD_KEY)},
     {"id": form_data_id("alice/x.png", ALICES_UPLOAD_KEY)}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "sent"), OWN)
async def test_the_callers_own_data_reaches_openim_bound_to_the_caller(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox, path: str, body: dict[str, Any], sent: dict[str, Any]
) -> None:
    if path != LOOKUP:
        recorder.overrides[path] = answered
    status, reply, _ = await im(alice, "/im" + path, body)
    assert (status, reply["errCode"]) == (200, 0)
    [seen] = from_the_client(recorder, sandbox, path)
    assert seen.json().items() >= sent.items()


@pytest.mark.parametrize("path", sorted(p for p, r in TABLE.items() if r.fill and all("." not in f for f in r.fill)))
async def test_every_filled_field_is_the_caller_when_the_body_leaves_it_out(
    alice: GatewayClient, recorder: Recorder, path: str
) -> None:
    route = TABLE[path]
    recorder.overrides[path] = answered
    body = {"contentType": 101, "sessionType": 1} if route.allow else {}
    status, _, _ = await im(alice, "/im" + path, body)
    assert status == 200
    [seen] = recorder.to(path)
    assert {f: seen.json()[f] for f in route.fill} == dict.fromkeys(route.fill, "alice")


# -- the /jssdk routes: protobuf, and the token's user on OpenIM's side -----------------------------------


async def test_the_jssdk_routes_pass_protobuf_untouched_and_answer_for_the_token_user_only(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    # bob and carol talk; alice asks for their conversation in bob's name.
    for owner, peer in (("bob", "carol"), ("carol", "bob")):
        sandbox.touch_conversation(owner, "si_bob_carol", session_type=1, peer=peer, group="")
    request = jssdk_pb2.GetConversationsReq(ownerUserID="bob", conversationIDs=["si_bob_carol"]).SerializeToString()
    status, reply, _ = await im(
        alice, "/im/jssdk/get_conversations", request, {"Content-Type": "application/x-protobuf"}
    )
    assert (status, reply["errCode"]) == (200, 0)
    [seen] = recorder.to("/jssdk/get_conversations")
    assert seen.body == request, "the bytes as the client sent them"
    assert seen.headers["Content-Type"] == "application/x-protobuf"
    answer = jssdk_pb2.GetConversationsResp.FromString(base64.b64decode(reply["data"]))
    assert list(answer.conversations) == [], "OpenIM answered for alice, whoever the body named"
    active = jssdk_pb2.GetActiveConversationsReq(ownerUserID="bob", count=20).SerializeToString()
    status, reply, _ = await im(
        alice, "/im/jssdk/get_active_conversations", active, {"Content-Type": "application/x-protobuf"}
    )
    assert (status, reply["errCode"], reply["data"]) == (200, 0, "")
    assert recorder.to("/jssdk/get_active_conversations")[0].body == active


# -- what the table leaves out ----------------------------------------------------------------------------

# OpenIM v3.8.3's routes (internal/api/router.go), by method.
V3_8_3_POST = """
/user/user_register /user/update_user_info /user/update_user_info_ex /user/set_global_msg_recv_opt
/user/get_users_info /user/get_all_users_uid /user/account_check /user/get_users /user/get_users_online_status
/user/get_users_online_token_detail /user/subscribe_users_status /user/get_users_status
/user/get_subscribe_users_status /user/process_user_command_add /user/process_user_command_delete
/user/process_user_command_update /user/process_user_command_get /user/process_user_command_get_all
/user/add_notification_account /user/update_notification_account /user/search_notification_account
/friend/delete_friend /friend/get_friend_apply_list /friend/get_designated_friend_apply
/friend/get_self_friend_apply_list /friend/get_friend_list /friend/get_designated_friends /friend/add_friend
/friend/add_friend_response /friend/set_friend_remark /friend/add_black /friend/get_black_list
/friend/get_specified_blacks /friend/remove_black /friend/get_incremental_blacks /friend/import_friend
/friend/is_friend /friend/get_friend_id /friend/get_specified_friends_info /friend/update_friends
/friend/get_incremental_friends /friend/get_full_friend_user_ids
/group/create_group /group/set_group_info /group/set_group_info_ex /group/join_group /group/quit_group
/group/group_application_response /group/transfer_group /group/get_recv_group_applicationList
/group/get_user_req_group_applicationList /group/get_group_users_req_application_list
/group/get_specified_user_group_request_info /group/get_groups_info /group/kick_group
/group/get_group_members_info /group/get_group_member_list /group/invite_user_to_group
/group/get_joined_group_list /group/dismiss_group /group/mute_group_member /group/cancel_mute_group_member
/group/mute_group /group/cancel_mute_group /group/set_group_member_info /group/get_group_abstract_info
/group/get_groups /group/get_group_member_user_id /group/get_incremental_join_groups
/group/get_incremental_group_members /group/get_incremental_group_members_batch
/group/get_full_group_member_user_ids /group/get_full_join_group_ids
/auth/get_admin_token /auth/get_user_token /auth/parse_token /auth/force_logout
/third/fcm_update_token /third/set_app_badge /third/logs/upload /third/logs/delete /third/logs/search
/object/part_limit /object/part_size /object/initiate_multipart_upload /object/auth_sign
/object/complete_multipart_upload /object/access_url /object/initiate_form_data /object/complete_form_data
/msg/newest_seq /msg/search_msg /msg/send_msg /msg/send_business_notification /msg/pull_msg_by_seq
/msg/revoke_msg /msg/mark_msgs_as_read /msg/mark_conversation_as_read /msg/get_conversations_has_read_and_max_seq
/msg/set_conversation_has_read_seq /msg/clear_conversation_msg /msg/user_clear_all_msg /msg/delete_msgs
/msg/delete_msg_phsical_by_seq /msg/delete_msg_physical /msg/batch_send_msg /msg/check_msg_is_send_success
/msg/get_server_time
/conversation/get_sorted_conversation_list /conversation/get_all_conversations /conversation/get_conversation
/conversation/get_conversations /conversation/set_conversations /conversation/get_conversation_offline_push_user_ids
/conversation/get_full_conversation_ids /conversation/get_incremental_conversations
/conversation/get_owner_conversation /conversation/get_not_notify_conversation_ids
/conversation/get_pinned_conversation_ids
/statistics/user/register /statistics/user/active /statistics/group/create /statistics/group/active
/jssdk/get_conversations /jssdk/get_active_conversations
""".split()  # noqa: SIM905 - as router.go lists them
V3_8_3_GET = ["/third/prometheus", "/object/{name}"] + [
    f"/prometheus_discovery/{s}"
    for s in "api user group msg friend conversation third auth push msg_gateway msg_transfer".split()  # noqa: SIM905
]
# The routes the issue names as refused, each for a reason docs/im-proxy.md gives.
STILL_REFUSED = ["/msg/search_msg", "/user/get_users", "/user/get_all_users_uid", "/group/get_groups",
                 "/msg/delete_msg_phsical_by_seq", "/auth/parse_token", "/object/auth_sign", "/object/access_url",
                 "/statistics/user/register", "/statistics/user/active", "/statistics/group/create",
                 "/statistics/group/active", "/user/get_users_online_token_detail", "/auth/get_admin_token",
                 "/auth/get_user_token", "/auth/force_logout", "/user/user_register", "/msg/delete_msg_physical",
                 "/msg/batch_send_msg", "/msg/send_business_notification", "/friend/import_friend"]  # fmt: skip


def test_the_table_holds_only_openim_routes_and_refuses_what_the_issue_names() -> None:
    assert len(V3_8_3_POST) + len(V3_8_3_GET) == 138
    assert set(TABLE) - {"/user/get_self_user_info"} <= set(V3_8_3_POST)
    assert not set(STILL_REFUSED) & set(TABLE)


def test_the_proxy_page_lists_every_openim_route() -> None:
    page = PROXY_PAGE.read_text()
    listed = [f"`{path}`" for path in V3_8_3_POST] + [f"`GET {path}`" for path in V3_8_3_GET]
    missing = [path for path in listed if path not in page]
    assert missing == []
    # Each row's phase is the table's (blank: not in it).
    rows = re.findall(r"^\| `(?:GET )?(/[^`]+)` \| ?(\d?) ?\|", page, re.MULTILINE)
    assert {path: phase for path, phase in rows} == {
        path: str(TABLE[path].phase) if path in TABLE else ""
        for path in V3_8_3_POST + V3_8_3_GET + ["/user/get_self_user_info"]
    }


@pytest.mark.parametrize("path", sorted(set(V3_8_3_POST) - set(TABLE)))
async def test_every_openim_route_left_out_is_404_and_never_forwarded(
    alice: GatewayClient, recorder: Recorder, path: str
) -> None:
    before = len(recorder.requests)
    status, reply, _ = await im(alice, "/im" + path, {"userID": "alice"})
    assert (status, reply["errCode"]) == (404, 40400)
    assert len(recorder.requests) == before


@pytest.mark.parametrize("path", ["/object/alice/x.png", "/prometheus_discovery/api", "/third/prometheus"])
async def test_openims_get_routes_are_not_served(alice: GatewayClient, recorder: Recorder, path: str) -> None:
    before = len(recorder.requests)
    response = await alice.request("GET", "/im" + path)
    assert (response.status, response.json()["errCode"]) == (405, 40500)
    assert len(recorder.requests) == before


# -- uploads ---------------------------------------------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def test_an_upload_names_the_public_im_base_and_the_client_cannot_choose_it(
    alice: GatewayClient, recorder: Recorder, gateway: Gateway
) -> None:
    content = b"alice's picture"
    start = {"hash": md5(md5(content).encode()), "size": len(content), "maxParts": -1, "name": "alice/pic.png",
             "contentType": "image/png", "urlPrefix": "https://evil.example/"}  # fmt: skip
    evil = {"X-Request-Api": "https://evil.example/im"}
    status, begun, _ = await im(alice, "/im/object/initiate_multipart_upload", start, evil)
    assert (status, begun["errCode"]) == (200, 0)
    [part] = begun["data"]["upload"]["sign"]["parts"]
    async with aiohttp.ClientSession() as http, http.put(part["url"], data=content) as response:
        assert response.status == 200, "straight to the object store, as the SDK does"
    done = {"uploadID": begun["data"]["upload"]["uploadID"], "parts": [md5(content)], "name": "alice/pic.png"}
    status, completed, _ = await im(alice, "/im/object/complete_multipart_upload", done, evil)
    assert (status, completed["data"]) == (200, {"url": PUBLIC_IM_URL + "/object/alice/pic.png"})
    sent = [r.headers.get("X-Request-Api") for r in recorder.requests if r.path.startswith("/object/")]
    assert sent == [PUBLIC_IM_URL, PUBLIC_IM_URL]
    download = await alice.request("GET", "/im/object/alice/pic.png")
    assert download.status == 405, "the download is not routed from /im"
    before = len(recorder.requests)
    status, refused, _ = await im(alice, "/im/object/complete_multipart_upload", done | {"name": "bob/pic.png"})
    assert (status, refused["errCode"]) == (403, 40303)
    assert len(recorder.requests) == before


async def test_a_form_upload_completes_only_by_the_callers_own_upload_id(
    alice: GatewayClient, recorder: Recorder, sandbox: Sandbox
) -> None:
    content = b"a form upload"
    status, begun, _ = await im(alice, "/im/object/initiate_form_data", {"name": "alice/f.png", "size": len(content)})
    assert (status, begun["errCode"]) == (200, 0)
    started = begun["data"]
    form = aiohttp.FormData(started["formData"])
    form.add_field(started["file"], content, filename="f.png")
    async with aiohttp.ClientSession() as http, http.post(started["url"], data=form) as response:
        assert response.status == 200
    status, done, _ = await im(alice, "/im/object/complete_form_data", {"id": started["id"]})
    assert (status, done["data"]) == (200, {"url": PUBLIC_IM_URL + "/object/alice/f.png"})
    # bob's upload, which OpenIM would let alice record as hers by an ID she made herself.
    key = sandbox.objects.records["alice/f.png"]["key"]
    forged = form_data_id("alice/mine.png", key.replace("/alice/", "/bob/"))
    status, refused, _ = await im(alice, "/im/object/complete_form_data", {"id": forged})
    assert (status, refused["errCode"]) == (403, 40303)
    assert len(recorder.to("/object/complete_form_data")) == 1


# -- the group writes left to OpenIM's role checks -----------------------------------------------------------

BOBS = "group-bobs"  # bob owns it; alice and carol are plain members

ROLE_WRITES = [
    ("/group/set_group_info_ex", {"groupID": BOBS, "groupName": "alice's now"}),
    ("/group/set_group_member_info", {"members": [{"groupID": BOBS, "userID": "carol", "nickname": "x"}]}),
    ("/group/mute_group", {"groupID": BOBS}),
    ("/group/cancel_mute_group", {"groupID": BOBS}),
    ("/group/mute_group_member", {"groupID": BOBS, "userID": "carol", "mutedSeconds": 60}),
    ("/group/cancel_mute_group_member", {"groupID": BOBS, "userID": "carol"}),
    ("/group/kick_group", {"groupID": BOBS, "kickedUserIDs": ["carol"]}),
    ("/group/dismiss_group", {"groupID": BOBS, "deleteMember": True}),
    ("/group/group_application_response", {"groupID": BOBS, "fromUserID": "dave", "handleResult": 1}),
    ("/group/get_specified_user_group_request_info", {"groupID": BOBS, "userID": "dave"}),
    ("/group/transfer_group", {"groupID": BOBS, "newOwnerUserID": "alice"}),
]


@pytest.mark.parametrize(("path", "body"), ROLE_WRITES)
async def test_a_plain_member_is_refused_the_managers_writes_by_openim(
    alice: GatewayClient, sandbox: Sandbox, path: str, body: dict[str, Any]
) -> None:
    make_group(sandbox, BOBS, "bob", "alice")
    sandbox.add_members(BOBS, [dict(sandbox.members[BOBS]["alice"], userID="carol")])
    sandbox.group_requests[(BOBS, "dave")] = {
        "groupID": BOBS, "userID": "dave", "handleResult": 0, "reqMsg": "", "handledMsg": "", "reqTime": 0,
        "handleUserID": "", "handledTime": 0, "ex": "", "joinSource": 3, "inviterUserID": "",
    }  # fmt: skip
    before = (dict(sandbox.groups[BOBS]), {u: dict(m) for u, m in sandbox.members[BOBS].items()})
    status, reply, _ = await im(alice, "/im" + path, body)
    assert status == 200, "forwarded: OpenIM checks the role"
    assert reply["errCode"] in (1001, 1002), reply  # NoPermission, or ArgsError where v3.8.3 says so
    assert (sandbox.groups[BOBS], sandbox.members[BOBS]) == before
    assert sandbox.group_requests[(BOBS, "dave")]["handleResult"] == 0


def test_every_group_write_without_a_binding_is_tried_as_a_plain_member() -> None:
    unbound = {p for p, r in TABLE.items() if p.startswith("/group/") and not _binds(r)}
    # A member may invite, in v3.8.3; group profiles are public.
    assert unbound <= {path for path, _ in ROLE_WRITES} | {"/group/invite_user_to_group", "/group/get_groups_info"}
