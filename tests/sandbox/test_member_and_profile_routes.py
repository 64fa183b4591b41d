"""The sandbox's set_group_member_info, set_global_msg_recv_opt and the subscription no-ops, as OpenIM v3.8.3
answers them: its permission rules in its order, and its holes."""

from __future__ import annotations

from typing import Any

import pytest

from messenger_gw.sandbox import Sandbox
from messenger_gw.sandbox.state import SORT_CHANGE_ID
from tests.conftest import Wire, assert_error

OWNER, ADMIN, MEMBER = 100, 60, 20


@pytest.fixture
async def tokens(wire: Wire) -> dict[str, str]:
    admin = await wire.admin_token()
    await wire.register(admin, "alice", "bob", "carol", "dave")
    return {"imAdmin": admin} | {u: await wire.user_token(admin, u, 1) for u in ("alice", "bob", "carol", "dave")}


@pytest.fixture
async def group_id(wire: Wire, tokens: dict[str, str]) -> str:
    """alice's group, bob an admin, carol a member."""
    body = {"ownerUserID": "alice", "memberUserIDs": ["carol"], "adminUserIDs": ["bob"],
            "groupInfo": {"groupName": "G", "groupType": 2}}  # fmt: skip
    created: str = (await wire.ok("/group/create_group", body, token=tokens["alice"]))["groupInfo"]["groupID"]
    return created


async def set_members(wire: Wire, token: str, *members: dict[str, Any]) -> dict[str, Any]:
    return await wire.post("/group/set_group_member_info", {"members": list(members)}, token=token)


async def test_a_member_changes_their_own_nickname_and_nobody_elses(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox, group_id: str
) -> None:
    version = sandbox.version_log("group_member", group_id).version
    own = {"groupID": group_id, "userID": "carol", "nickname": "Caz"}
    assert (await set_members(wire, tokens["carol"], own))["errCode"] == 0
    assert sandbox.members[group_id]["carol"]["nickname"] == "Caz"
    assert sandbox.version_log("group_member", group_id).version == version + 1
    reply = await set_members(wire, tokens["carol"], own | {"userID": "bob"})
    assert_error(reply, 1002)
    assert reply["errDlt"] == "ordinary users can not change other role level"


@pytest.mark.parametrize(
    ("who", "change", "code", "detail"),
    [
        ("carol", {"userID": "carol", "roleLevel": ADMIN}, 1002, "can not improve role level by self"),
        ("bob", {"userID": "alice", "nickname": "x"}, 1002, "admin can not change group owner"),
        ("alice", {"userID": "alice", "roleLevel": MEMBER}, 1001, "group owner can not change own role level"),
        ("alice", {"userID": "carol", "roleLevel": OWNER}, 1002, "cannot set ungroup owner"),
        ("alice", {"userID": "carol", "roleLevel": 7}, 1001, "invalid role level"),
        ("dave", {"userID": "carol", "nickname": "x"}, 1002, "user not in group"),
        ("alice", {"userID": "dave", "nickname": "x"}, 1001, "user not in group"),
    ],
)
async def test_v3_8_3s_rules_refuse_in_its_order(
    wire: Wire, tokens: dict[str, str], group_id: str, who: str, change: dict[str, Any], code: int, detail: str
) -> None:
    reply = await set_members(wire, tokens[who], {"groupID": group_id} | change)
    assert_error(reply, code)
    assert reply["errDlt"] == detail


async def test_the_owner_makes_a_member_an_admin_which_reorders_the_members(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox, group_id: str
) -> None:
    change = {"groupID": group_id, "userID": "carol", "roleLevel": ADMIN}
    assert (await set_members(wire, tokens["alice"], change))["errCode"] == 0
    assert sandbox.members[group_id]["carol"]["roleLevel"] == ADMIN
    log = sandbox.version_log("group_member", group_id)
    assert log.element_version(SORT_CHANGE_ID) == log.version == log.element_version("carol")


async def test_an_app_admin_outside_the_group_changes_anyone_but_a_member_twice_is_refused(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox, group_id: str
) -> None:
    change = {"groupID": group_id, "userID": "alice", "ex": "set by the app"}
    assert (await set_members(wire, tokens["imAdmin"], change))["errCode"] == 0
    assert sandbox.members[group_id]["alice"]["ex"] == "set by the app"
    assert_error(await set_members(wire, tokens["imAdmin"], change, change), 1001)
    assert_error(await set_members(wire, tokens["alice"]), 1001)


async def test_anyone_sets_anyones_global_receive_option(wire: Wire, tokens: dict[str, str], sandbox: Sandbox) -> None:
    assert (await wire.post("/user/set_global_msg_recv_opt", {"userID": "bob", "globalRecvMsgOpt": 2},
                            token=tokens["alice"]))["errCode"] == 0  # fmt: skip
    assert sandbox.users["bob"]["globalRecvMsgOpt"] == 2, "v3.8.3's hole: alice set bob's"
    for body, code in (({"userID": "bob", "globalRecvMsgOpt": 3}, 1001), ({"userID": "zed"}, 1004), ({}, 1001)):
        assert_error(await wire.post("/user/set_global_msg_recv_opt", body, token=tokens["alice"]), code)


async def test_the_subscription_routes_are_no_ops_past_their_checks(wire: Wire, tokens: dict[str, str]) -> None:
    subscribe = {"userID": "alice", "userIDs": ["bob"], "genre": 1}
    assert await wire.post("/user/subscribe_users_status", subscribe, token=tokens["alice"]) == {
        "errCode": 0, "errMsg": "", "errDlt": ""
    }  # fmt: skip
    assert_error(await wire.post("/user/subscribe_users_status", subscribe | {"genre": 3}, token=tokens["alice"]), 1001)
    reply = await wire.post("/user/get_subscribe_users_status", {"userID": "alice"}, token=tokens["alice"])
    assert reply == {"errCode": 0, "errMsg": "", "errDlt": ""}
