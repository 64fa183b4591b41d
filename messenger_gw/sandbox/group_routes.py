"""``/group/*`` (contract section 5)."""

from __future__ import annotations

from typing import Any

from .envelope import Body, CodeError
from .friend_routes import full_ids, incremental
from .routing import caller_of, check, route
from .state import Caller, Sandbox

OWNER, ADMIN, MEMBER = 100, 60, 20
DISMISSED = 2


def _group(sb: Sandbox, group_id: str) -> dict[str, Any]:
    group = sb.groups.get(group_id)
    if group is None:
        raise CodeError(1004, "group not found")
    return group


def _member(sb: Sandbox, group_id: str, user_id: str, role: int, join_source: int, operator: str) -> dict[str, Any]:
    user = sb.users[user_id]
    return {
        "groupID": group_id,
        "userID": user_id,
        "roleLevel": role,
        "joinTime": sb.now_ms(),
        "nickname": user["nickname"],
        "faceURL": user["faceURL"],
        "appMangerLevel": user["appMangerLevel"],
        "joinSource": join_source,
        "operatorUserID": operator,
        "ex": "",
        "muteEndTime": 0,
        "inviterUserID": operator,
    }


def _page(body: Body) -> tuple[int, int]:
    pagination = body.object("pagination")
    number = pagination.integer("pageNumber") if pagination else 1
    size = (pagination.integer("showNumber") if pagination else 0) or 100
    check(number >= 1)
    return number, size


def _sync_count(sb: Sandbox, group_id: str) -> None:
    sb.groups[group_id]["memberCount"] = len(sb.members[group_id])


@route("/group/create_group")
def create_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    info = body.object("groupInfo")
    owner = body.string("ownerUserID")
    members, admins = body.strings("memberUserIDs") or [], body.strings("adminUserIDs") or []
    check(info is not None and bool(owner))
    assert info is not None
    if info.integer("groupType") != 2:
        raise CodeError(1001, "groupType must be 2 (WorkingGroup)")
    who = caller_of(caller)
    if not who.is_admin and who.user_id != owner:
        raise CodeError(1002, "caller must be the owner or an admin")
    everyone = [owner, *admins, *members]
    if len(set(everyone)) != len(everyone):
        raise CodeError(1001, "duplicate userIDs")
    if any(u not in sb.users for u in everyone):
        raise CodeError(1101, "user not found")
    group_id = info.string("groupID") or sb.new_group_id()
    if group_id in sb.groups:
        raise CodeError(1202, "groupID existed")
    sb.groups[group_id] = {
        "groupID": group_id,
        "groupName": info.string("groupName"),
        "notification": info.string("notification"),
        "introduction": info.string("introduction"),
        "faceURL": info.string("faceURL"),
        "ownerUserID": owner,
        "createTime": sb.now_ms(),
        "memberCount": 0,
        "ex": info.string("ex"),
        "status": 0,
        "creatorUserID": who.user_id,
        "groupType": 2,
        "needVerification": info.integer("needVerification"),
        "lookMemberInfo": info.integer("lookMemberInfo"),
        "applyMemberFriend": info.integer("applyMemberFriend"),
        "notificationUpdateTime": 0,
        "notificationUserID": "",
    }
    roles = {owner: OWNER} | {a: ADMIN for a in admins} | {m: MEMBER for m in members}
    sb.members[group_id] = {u: _member(sb, group_id, u, role, 1, who.user_id) for u, role in roles.items()}
    _sync_count(sb, group_id)
    if who.user_id not in roles:
        sb.groups[group_id]["memberCount"] += 1  # quirk: the operator is counted though not a member
    # Quirk: the after version lists owner and admins, then every ID again at 20, operator included.
    listed = [{"userID": u, "roleLevel": r} for u, r in roles.items() if r != MEMBER]
    listed += [{"userID": u, "roleLevel": MEMBER} for u in dict.fromkeys([*members, *admins, owner, who.user_id])]
    sb.after("callbackAfterCreateGroupCommand", dict(sb.groups[group_id]) | {"initMemberList": listed})
    return {"groupInfo": dict(sb.groups[group_id])}


@route("/group/get_groups_info")
def get_groups_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_ids = body.strings("groupIDs") or []
    check(bool(group_ids))
    found = [dict(sb.groups[g]) for g in group_ids if g in sb.groups]
    return {"groupInfos": found or None}


@route("/group/get_joined_group_list")
def get_joined_group_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("fromUserID")
    number, size = _page(body)
    who = caller_of(caller)
    if not who.is_admin and who.user_id != user_id:
        raise CodeError(1002, "no permission")
    joined = [dict(sb.groups[g]) for g, members in sb.members.items() if user_id in members]
    return {"total": len(joined), "groups": joined[(number - 1) * size : number * size] or None}


@route("/group/get_group_member_list")
def get_group_member_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No membership check in v3.8.3.
    group_id = body.string("groupID")
    number, size = _page(body)
    _group(sb, group_id)
    keyword = body.string("keyword")
    members = [
        dict(m) for m in sb.members[group_id].values()
        if not keyword or keyword in (m["userID"], m["nickname"])
    ]  # fmt: skip
    return {"total": len(members), "members": members[(number - 1) * size : number * size] or None}


@route("/group/get_group_members_info")
def get_group_members_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_ids = body.string("groupID"), body.strings("userIDs") or []
    check(bool(group_id) and bool(user_ids))
    members = sb.members.get(group_id, {})
    found = [dict(members[u]) for u in user_ids if u in members]
    return {"members": found or None}


@route("/group/invite_user_to_group")
def invite_user_to_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, invited = body.string("groupID"), body.strings("invitedUserIDs") or []
    check(bool(invited) and len(set(invited)) == len(invited))
    group = _group(sb, group_id)
    if group["status"] == DISMISSED:
        raise CodeError(1204, "group dismissed")
    if any(u not in sb.users for u in invited):
        raise CodeError(1004, "user not found")
    who = caller_of(caller)
    members = sb.members[group_id]
    if not who.is_admin and who.user_id not in members:
        raise CodeError(1004, "caller not in group")
    for user_id in invited:
        members.setdefault(user_id, _member(sb, group_id, user_id, MEMBER, 2, who.user_id))
    _sync_count(sb, group_id)
    return None


@route("/group/kick_group")
def kick_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, kicked = body.string("groupID"), body.strings("kickedUserIDs") or []
    who = caller_of(caller)
    check(bool(kicked) and len(set(kicked)) == len(kicked) and who.user_id not in kicked)
    group = _group(sb, group_id)
    members = sb.members[group_id]
    if group["ownerUserID"] in kicked:
        raise CodeError(1001, "cannot kick the owner")
    if any(u not in members for u in kicked):
        raise CodeError(1101, "user not in group")
    if not who.is_admin:
        role = members.get(who.user_id, {}).get("roleLevel", 0)
        if not (role == OWNER or (role == ADMIN and all(members[u]["roleLevel"] == MEMBER for u in kicked))):
            raise CodeError(1002, "no permission to kick")
    for user_id in kicked:
        del members[user_id]
    _sync_count(sb, group_id)
    sb.after(
        "callbackAfterKickGroupCommand", {"groupID": group_id, "kickedUserIDs": kicked, "reason": body.string("reason")}
    )
    return None


@route("/group/quit_group")
def quit_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    who = caller_of(caller)
    group_id = body.string("groupID")
    user_id = body.string("userID") or who.user_id
    if not who.is_admin and who.user_id != user_id:
        raise CodeError(1002, "no permission")
    group = _group(sb, group_id)
    if group["ownerUserID"] == user_id:
        raise CodeError(1002, "the owner cannot quit")
    if user_id not in sb.members[group_id]:
        raise CodeError(1004, "not in group")
    del sb.members[group_id][user_id]
    _sync_count(sb, group_id)
    sb.after("callbackAfterQuitGroupCommand", {"groupID": group_id, "userID": user_id})
    return None


@route("/group/dismiss_group")
def dismiss_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id = body.string("groupID")
    group = _group(sb, group_id)
    who = caller_of(caller)
    if not who.is_admin and group["ownerUserID"] != who.user_id:
        raise CodeError(1002, "not group owner")
    delete_members = body.boolean("deleteMember")
    if group["status"] == DISMISSED and not delete_members:
        raise CodeError(1204, "group dismissed already")
    group["status"] = DISMISSED
    if delete_members:
        sb.members[group_id] = {}
        _sync_count(sb, group_id)
    # Quirk: groupType is Go's string(int32): 2 arrives as the control character U+0002.
    dismissed = {"groupID": group_id, "ownerID": group["ownerUserID"], "groupType": chr(group["groupType"])}
    sb.after("callbackAfterDisMissGroupCommand", dismissed | {"membersID": list(sb.members[group_id]) or None})
    return None


@route("/group/get_groups")
def get_groups(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # Meant as the admin list; no admin check in v3.8.3.
    number, size = _page(body)
    name, group_id = body.string("groupName"), body.string("groupID")
    groups = [
        g for g in sb.groups.values()
        if (not group_id or g["groupID"] == group_id) and (not name or name in g["groupName"])
    ]  # fmt: skip
    page = groups[(number - 1) * size : number * size]
    items = [
        {
            "groupInfo": dict(g),
            "groupOwnerUserName": sb.users.get(g["ownerUserID"], {}).get("nickname", ""),
            "groupOwnerUserID": g["ownerUserID"],
        }
        for g in page
    ]
    return {"total": len(groups), "groups": items or None}


@route("/group/mute_group_member")
def mute_group_member(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_id, seconds = body.string("groupID"), body.string("userID"), body.integer("mutedSeconds")
    check(seconds > 0)
    members = sb.members.get(_group(sb, group_id)["groupID"], {})
    if user_id not in members:
        raise CodeError(1101, "user not in group")
    _check_mute_permission(sb, caller, members, user_id)
    members[user_id]["muteEndTime"] = sb.now_ms() + seconds * 1000
    return None


@route("/group/cancel_mute_group_member")
def cancel_mute_group_member(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_id = body.string("groupID"), body.string("userID")
    members = sb.members.get(_group(sb, group_id)["groupID"], {})
    if user_id not in members:
        raise CodeError(1101, "user not in group")
    _check_mute_permission(sb, caller, members, user_id)
    members[user_id]["muteEndTime"] = 0
    return None


def _check_mute_permission(sb: Sandbox, caller: Caller | None, members: dict[str, Any], target: str) -> None:
    who = caller_of(caller)
    if who.is_admin:
        return
    role = members.get(who.user_id, {}).get("roleLevel", 0)
    target_role = members[target]["roleLevel"]
    if target_role == OWNER or role < ADMIN or (role == ADMIN and target_role != MEMBER):
        raise CodeError(1002, "no permission to mute")


@route("/group/mute_group")
def mute_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    _set_group_status(sb, caller, body.string("groupID"), 3)
    return None


@route("/group/cancel_mute_group")
def cancel_mute_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    _set_group_status(sb, caller, body.string("groupID"), 0)
    return None


def _set_group_status(sb: Sandbox, caller: Caller | None, group_id: str, status: int) -> None:
    group = _group(sb, group_id)
    who = caller_of(caller)
    role = sb.members[group_id].get(who.user_id, {}).get("roleLevel", 0)
    if not who.is_admin and role < ADMIN:
        raise CodeError(1002, "no permission")
    group["status"] = status


# -- the SDK's login sync --------------------------------------------------------------------


@route("/group/get_incremental_join_groups")
def get_incremental_join_groups(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    who = caller_of(caller)
    if not who.is_admin and who.user_id != user_id:
        raise CodeError(1002, "no permission")
    joined = {g for g, members in sb.members.items() if user_id in members}
    return incremental(sb, "group", user_id, body, lambda g: dict(sb.groups[g]) if g in joined else None)


@route("/group/get_full_join_group_ids")
def get_full_join_group_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3: any user's groups
    return full_ids(sb, "group", user_id, [g for g, members in sb.members.items() if user_id in members], body)
