"""``/group/*`` (contract section 5; ``internal/rpc/group`` of v3.8.3).

Groups live in ``Sandbox.groups`` (the stored group: its owner and member count are read from
the members, as OpenIM reads them) and members in ``Sandbox.members`` (nickname and face empty
unless set, filled from the user when read). Join requests are in ``Sandbox.group_requests``.
Every membership change goes through ``Sandbox.add_members`` / ``remove_members``, so the
group's member log and each user's join log (the two incremental syncs) record it; a change of
the group itself is recorded in the member log under the group-change ID. The notifications
(``notifications.py``) carry the member log's version, as ``setVersion`` does.

Permissions are v3.8.3's, holes included: ``join_group`` joins ``inviterUserID`` (any user)
and the member reads take any group.
"""

from __future__ import annotations

from typing import Any

from . import notifications as n
from .envelope import Body, CodeError
from .friend_routes import full_ids, incremental
from .routing import caller_of, check, require_self_or_admin, route
from .state import GROUP_CHANGE_ID, OPERATION_ID, SORT_CHANGE_ID, Caller, Sandbox

OWNER, ADMIN, MEMBER = 100, 60, 20
GROUP_OK, DISMISSED, MUTED = 0, 2, 3
ALL_NEED_VERIFICATION, DIRECTLY = 1, 2  # needVerification
JOIN_BY_INVITATION = 2
AGREE, REFUSE = 1, -1
APP_ADMIN = 2  # constant.AppAdmin: the appMangerLevel OpenIM gives an app admin acting in a group
APPLICANT_RECEIVER, ADMIN_RECEIVER = 0, 1
GROUP_NOTIFICATION_AT = 4  # conversation.groupAtType: the group has a new announcement

GROUP_INFO_FIELDS = (
    "groupID",
    "groupName",
    "notification",
    "introduction",
    "faceURL",
    "ownerUserID",
    "createTime",
    "memberCount",
    "ex",
    "status",
    "creatorUserID",
    "groupType",
    "needVerification",
    "lookMemberInfo",
    "applyMemberFriend",
    "notificationUpdateTime",
    "notificationUserID",
)
MEMBER_FIELDS = (
    "groupID",
    "userID",
    "roleLevel",
    "joinTime",
    "nickname",
    "faceURL",
    "appMangerLevel",
    "joinSource",
    "operatorUserID",
    "ex",
    "muteEndTime",
    "inviterUserID",
)


# -- reads of the store, as OpenIM's converters give them ---------------------------------------------


def take_group(sb: Sandbox, group_id: str) -> dict[str, Any]:
    group = sb.groups.get(group_id)
    if group is None:
        raise CodeError(1004, "mongo: no documents in result")
    return group


def take_member(sb: Sandbox, group_id: str, user_id: str) -> dict[str, Any]:
    member = sb.members.get(group_id, {}).get(user_id)
    if member is None:
        raise CodeError(1004, "mongo: no documents in result")
    return member


def group_info(sb: Sandbox, group_id: str, *, member_count: int | None = None) -> dict[str, Any]:
    """``Db2PbGroupInfo``: the stored group with its owner and member count read from its members."""
    group = sb.groups[group_id]
    count = len(sb.members.get(group_id, {})) if member_count is None else member_count
    live = {"ownerUserID": sb.group_owner(group_id), "memberCount": count}
    return {name: live[name] if name in live else group[name] for name in GROUP_INFO_FIELDS}


def member_full_info(**fields: Any) -> dict[str, Any]:
    """A ``GroupMemberFullInfo`` with Go's zero values for what is not given."""
    zero: dict[str, Any] = {"roleLevel": 0, "joinTime": 0, "appMangerLevel": 0, "joinSource": 0, "muteEndTime": 0}
    return {name: fields.get(name, zero.get(name, "")) for name in MEMBER_FIELDS}


def member_info(sb: Sandbox, member: dict[str, Any]) -> dict[str, Any]:
    """``Db2PbGroupMember`` after ``PopulateGroupMember``: an empty nickname or face is the
    user's; ``appMangerLevel`` is never filled in."""
    user = sb.users.get(member["userID"], {})
    filled = {"nickname": member["nickname"] or user.get("nickname", ""),
              "faceURL": member["faceURL"] or user.get("faceURL", ""), "appMangerLevel": 0}  # fmt: skip
    return member_full_info(**member | filled)


def sorted_members(sb: Sandbox, group_id: str) -> list[dict[str, Any]]:
    """``memberSort``: role level descending, then in the order they joined."""
    return sorted(sb.members.get(group_id, {}).values(), key=lambda m: -m["roleLevel"])


def new_member(
    sb: Sandbox, group_id: str, user_id: str, role: int, *, operator: str, inviter: str, join_source: int
) -> dict[str, Any]:
    """A ``model.GroupMember`` as stored: no nickname or face of its own."""
    return member_full_info(
        groupID=group_id,
        userID=user_id,
        roleLevel=role,
        joinTime=sb.now_ms(),
        joinSource=join_source,
        operatorUserID=operator,
        inviterUserID=inviter,
    )


def member_version(sb: Sandbox, group_id: str) -> dict[str, Any]:
    """``setVersion``: the group's member log as this request left it."""
    log = sb.version_log("group_member", group_id)
    return {"groupMemberVersion": log.version, "groupMemberVersionID": log.version_id}


def op_user(sb: Sandbox, group_id: str, user_id: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fillOpUserByUserID``: an app admin as a group admin of app level 2, a member as its
    member record, anyone else as ``given`` or a bare record; nickname and face from the user."""
    user = sb.users.get(user_id, {})
    member = sb.members.get(group_id, {}).get(user_id)
    if sb.is_admin(user_id):
        info = member_full_info(groupID=group_id, userID=user_id, roleLevel=ADMIN, appMangerLevel=APP_ADMIN)
    elif member is not None:
        info = member_full_info(**member)
    elif given is not None:
        info = dict(given)
    else:
        return member_full_info(
            groupID=group_id,
            userID=user_id,
            nickname=user.get("nickname", ""),
            faceURL=user.get("faceURL", ""),
            operatorUserID=user_id,
        )
    info["nickname"] = info["nickname"] or user.get("nickname", "")
    info["faceURL"] = info["faceURL"] or user.get("faceURL", "")
    return info


def page(body: Body, items: list[Any]) -> list[Any] | None:
    """``Check()`` wants a pagination with pageNumber >= 1; ``Paginate`` gives nothing for
    showNumber 0 (JSON null, as Go's nil slice)."""
    pagination = body.object("pagination")
    check(pagination is not None and pagination.integer("pageNumber") >= 1)
    assert pagination is not None
    number, size = pagination.integer("pageNumber"), pagination.integer("showNumber")
    return items[(number - 1) * size : number * size] or None if size > 0 else None


def _is_manager(role: int) -> bool:
    return role in (OWNER, ADMIN)


# -- create, read ---------------------------------------------------------------------------------------


@route("/group/create_group")
async def create_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    info, owner = body.object("groupInfo"), body.string("ownerUserID")
    check(info is not None and 0 <= info.integer("groupType") <= 2 and bool(owner))
    assert info is not None
    members, admins = body.strings("memberUserIDs") or [], body.strings("adminUserIDs") or []
    if info.integer("groupType") != 2:
        raise CodeError(1001, "group type only supports 2")
    who = require_self_or_admin(caller, owner)
    user_ids = [*members, *admins, owner]
    if who.user_id not in user_ids:
        user_ids.append(who.user_id)  # the operator is counted, not made a member
    if len(set(user_ids)) != len(user_ids):
        raise CodeError(1001, "group member repeated")
    if any(u not in sb.users for u in user_ids):
        raise CodeError(1101, "user not found")
    group_id = info.string("groupID")
    if group_id in sb.groups:
        raise CodeError(1202, f"group id existed {group_id}")
    group_id = group_id or sb.new_group_id()
    # Pb2DBGroupInfo: status, creator and notification fields are taken from the caller as sent.
    sb.groups[group_id] = {
        "groupID": group_id,
        "groupName": info.string("groupName"),
        "notification": info.string("notification"),
        "introduction": info.string("introduction"),
        "faceURL": info.string("faceURL"),
        "createTime": sb.now_ms(),
        "ex": info.string("ex"),
        "status": info.integer("status"),
        "creatorUserID": info.string("creatorUserID"),
        "groupType": 2,
        "needVerification": info.integer("needVerification"),
        "lookMemberInfo": info.integer("lookMemberInfo"),
        "applyMemberFriend": info.integer("applyMemberFriend"),
        "notificationUpdateTime": info.integer("notificationUpdateTime"),
        "notificationUserID": info.string("notificationUserID"),
    }
    roles = [(owner, OWNER)] + [(a, ADMIN) for a in admins] + [(m, MEMBER) for m in members]
    created = [
        new_member(sb, group_id, u, role, operator=who.user_id, inviter=who.user_id, join_source=JOIN_BY_INVITATION)
        for u, role in roles
    ]
    sb.add_members(group_id, created)
    reply = group_info(sb, group_id, member_count=len(user_ids))
    level = {u: sb.users[u]["appMangerLevel"] for u in user_ids}
    # The tips' owner is taken before the nicknames are filled in, and the member list stops at
    # the operator: a user's own group lists only its owner.
    member_list = []
    for member in created:
        member_list.append(
            member_full_info(
                **member
                | {"nickname": sb.users[member["userID"]]["nickname"], "appMangerLevel": level[member["userID"]]}
            )
        )
        if member["userID"] == who.user_id:
            break
    opener = op_user(sb, group_id, who.user_id)
    tips = {
        "group": reply,
        "opUser": opener,
        "memberList": member_list,
        "operationTime": reply["createTime"],
        "groupOwnerUser": member_full_info(**created[0] | {"appMangerLevel": level[owner]}),
    }
    await n.notify(sb, who.user_id, group_id, n.GROUP_CREATED, tips | member_version(sb, group_id))
    if info.string("notification"):
        announced = {"opUser": opener, "group": reply} | member_version(sb, group_id)
        await n.notify(sb, who.user_id, group_id, n.GROUP_INFO_SET_ANNOUNCEMENT, announced, with_sender=True)
    # Quirk: the after version lists owner and admins, then every ID again at 20, operator included.
    listed = [{"userID": u, "roleLevel": r} for u, r in roles if r != MEMBER]
    listed += [{"userID": u, "roleLevel": MEMBER} for u in dict.fromkeys([*members, *admins, owner, who.user_id])]
    sb.after("callbackAfterCreateGroupCommand", reply | {"initMemberList": listed})
    return {"groupInfo": reply}


@route("/group/get_groups_info")
def get_groups_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_ids = body.strings("groupIDs")
    check(group_ids is not None)
    if not group_ids:
        raise CodeError(1001, "groupID is empty")
    found = [group_info(sb, g) for g in dict.fromkeys(group_ids) if g in sb.groups]  # no permission check
    return {"groupInfos": found or None}


@route("/group/get_joined_group_list")
def get_joined_group_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("fromUserID")
    joined = [g for g, members in sb.members.items() if user_id in members]
    groups = page(body, joined)
    check(bool(user_id))
    require_self_or_admin(caller, user_id)
    return {"total": len(joined), "groups": [group_info(sb, g) for g in groups or []] or None}


@route("/group/get_group_member_list")
def get_group_member_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No membership check in v3.8.3, nor a check that the group exists.
    group_id, keyword = body.string("groupID"), body.string("keyword")
    check(bool(group_id) and 0 <= body.integer("filter") <= 5)
    members = [member_info(sb, m) for m in sorted_members(sb, group_id)]
    if keyword:  # the whole keyword: a userID or a nickname
        members = [m for m in members if keyword in (m["userID"], m["nickname"])]
    return {"total": len(members), "members": page(body, members)}


@route("/group/get_group_members_info")
def get_group_members_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_ids = body.string("groupID"), body.strings("userIDs")
    check(bool(group_id) and user_ids is not None)
    if not user_ids:
        raise CodeError(1001, "userIDs empty")
    members = sb.members.get(group_id, {})
    found = [member_info(sb, members[u]) for u in dict.fromkeys(user_ids) if u in members]
    return {"members": found or None}


@route("/group/get_groups")
def get_groups(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # Meant as the admin list; no admin check in v3.8.3.
    name, group_id = body.string("groupName"), body.string("groupID")
    if group_id:
        groups = [group_id] if group_id in sb.groups else []
    else:
        groups = [g for g, stored in sb.groups.items() if not name or name in stored["groupName"]]
    shown = page(body, groups)  # Check() wants a pagination even for one groupID
    shown = groups if group_id else shown
    items = [
        {
            "groupInfo": group_info(sb, g),
            "groupOwnerUserName": sb.members[g][sb.group_owner(g)]["nickname"] if sb.group_owner(g) else "",
            "groupOwnerUserID": sb.group_owner(g),
        }
        for g in shown or []
    ]
    return {"total": len(groups), "groups": items or None}


@route("/group/set_group_info_ex")
async def set_group_info_ex(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    """``SetGroupInfoEx`` (the SDK's setGroupInfo): the owner, an admin or an app admin; the
    fields are wrappers, absent or null leaving a value as it is. 1519 for a new announcement,
    1520 for a new name, 1502 for anything else."""
    group_id = body.string("groupID")
    who = caller_of(caller)
    if not who.is_admin and not _is_manager(take_member(sb, group_id, who.user_id)["roleLevel"]):
        raise CodeError(1002, "no group owner or admin")
    group = take_group(sb, group_id)
    if group["status"] == DISMISSED:
        raise CodeError(1204)
    if not sb.group_owner(group_id):
        raise CodeError(1004, "mongo: no documents in result")
    update: dict[str, Any] = {}
    for name in ("groupName", "notification", "introduction", "faceURL", "ex"):
        if body.has(name):
            update[name] = body.string(name)
    for name in ("needVerification", "lookMemberInfo", "applyMemberFriend"):
        if body.has(name):
            update[name] = body.integer(name)
    if "notification" in update:
        update |= {"notificationUpdateTime": sb.now_ms(), "notificationUserID": who.user_id}
    if not update or update.get("groupName") == "":
        # An empty name makes UpdateGroupInfoExMap fail with no fields, which v3.8.3 takes for
        # "nothing to change" before it looks at the error: a success that changes nothing.
        return None
    group.update(update)
    sb.version_log("group_member", group_id).change(GROUP_CHANGE_ID, "update")
    op_member = sb.members[group_id].get(who.user_id)
    opener = op_user(sb, group_id, who.user_id, member_full_info() if op_member is None else member_info(sb, op_member))
    info, version = group_info(sb, group_id), member_version(sb, group_id)
    rest = len(update) - (3 if "notification" in update else 0) - (1 if "groupName" in update else 0)
    if update.get("notification"):
        for user_id in sb.members[group_id]:  # SetConversations: groupAtType GroupNotification
            sb.touch_conversation(user_id, f"sg_{group_id}", session_type=3, peer="", group=group_id)
            sb.conversations[(user_id, f"sg_{group_id}")]["groupAtType"] = GROUP_NOTIFICATION_AT
            sb.version_log("conversation", user_id).change(f"sg_{group_id}", "update")
        announced = {"opUser": opener, "group": info} | version
        await n.notify(sb, who.user_id, group_id, n.GROUP_INFO_SET_ANNOUNCEMENT, announced, with_sender=True)
    if "groupName" in update:
        await n.notify(sb, who.user_id, group_id, n.GROUP_INFO_SET_NAME, {"opUser": opener, "group": info} | version)
    if rest > 0:
        tips = {"opUser": opener, "muteTime": 0, "group": info} | version
        await n.notify(sb, who.user_id, group_id, n.GROUP_INFO_SET, tips, with_sender=True)
    return None


# -- membership -----------------------------------------------------------------------------------------


@route("/group/invite_user_to_group")
async def invite_user_to_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, invited = body.string("groupID"), body.strings("invitedUserIDs")
    check(bool(group_id) and invited is not None)
    assert invited is not None
    if not invited:
        raise CodeError(1001, "user empty")
    if len(set(invited)) != len(invited):
        raise CodeError(1001, "userID duplicate")
    group = take_group(sb, group_id)
    if group["status"] == DISMISSED:
        raise CodeError(1204, "group dismissed checking group status found it dismissed")
    if any(u not in sb.users for u in invited):
        raise CodeError(1004, "user not found")
    who = caller_of(caller)
    op_member = None if who.is_admin else take_member(sb, group_id, who.user_id)
    if group["needVerification"] == ALL_NEED_VERIFICATION and op_member and not _is_manager(op_member["roleLevel"]):
        for user_id in invited:  # requests instead of members, and still a success
            _request_to_join(sb, group_id, user_id, "", JOIN_BY_INVITATION, who.user_id, "")
        for user_id in invited:
            await _application_notification(sb, who.user_id, group_id, user_id, "")
        return None
    if any(u in sb.members[group_id] for u in invited):
        raise CodeError(500, "E11000 duplicate key error collection: openim_v3.group_member")  # no pre-check
    sb.add_members(
        group_id,
        [
            new_member(
                sb, group_id, u, MEMBER, operator=who.user_id, inviter=who.user_id, join_source=JOIN_BY_INVITATION
            )
            for u in invited
        ],
    )
    await _members_entered(sb, who.user_id, group_id, invited, inviter=who.user_id)
    return None


async def _members_entered(sb: Sandbox, op: str, group_id: str, user_ids: list[str], *, inviter: str) -> None:
    """``GroupApplicationAgreeMemberEnterNotification``: their group conversations, then 1509."""
    for user_id in user_ids:
        sb.touch_conversation(user_id, f"sg_{group_id}", session_type=3, peer="", group=group_id)
    members = sb.members[group_id]
    opener = op_user(sb, group_id, op)
    tips = {
        "group": group_info(sb, group_id),
        "opUser": opener,
        "invitedUserList": [member_info(sb, members[u]) for u in user_ids if u in members],
        "operationTime": 0,
    } | member_version(sb, group_id)
    tips["inviterUser"] = None if not inviter else opener if inviter == op else op_user(sb, group_id, inviter)
    await n.notify(sb, op, group_id, n.MEMBER_INVITED, tips)


@route("/group/join_group")
async def join_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, join_source, applicant = body.string("groupID"), body.integer("joinSource"), body.string("inviterUserID")
    check(bool(group_id) and 1 <= join_source <= 4 and (join_source != 2 or bool(applicant)))
    who = caller_of(caller)
    # v3.8.3: the joiner is inviterUserID as sent, never compared with the caller.
    if applicant not in sb.users:
        raise CodeError(1004, "record not found")
    group = take_group(sb, group_id)
    if group["status"] == DISMISSED:
        raise CodeError(1204)
    if applicant in sb.members[group_id]:
        raise CodeError(1001)
    req_message, ex = body.string("reqMessage"), body.string("ex")
    if group["needVerification"] == DIRECTLY:
        sb.add_members(
            group_id,
            [new_member(sb, group_id, applicant, MEMBER, operator=who.user_id, inviter=applicant, join_source=0)],
        )
        sb.touch_conversation(applicant, f"sg_{group_id}", session_type=3, peer="", group=group_id)
        entered = {
            "group": group_info(sb, group_id),
            "entrantUser": member_info(sb, sb.members[group_id][applicant]),
            "operationTime": sb.now_ms(),
        } | member_version(sb, group_id)
        await n.notify(sb, who.user_id, group_id, n.MEMBER_ENTER, entered)
        sb.after(
            "callbackAfterJoinGroupCommand",
            {
                "operationID": OPERATION_ID.get(),
                "groupID": group_id,
                "reqMessage": req_message,
                "joinSource": join_source,
                "inviterUserID": applicant,
            },
        )
        return None
    _request_to_join(sb, group_id, applicant, req_message, join_source, "", ex)
    await _application_notification(sb, who.user_id, group_id, applicant, req_message)
    return None


def _request_to_join(
    sb: Sandbox, group_id: str, user_id: str, req_msg: str, join_source: int, inviter: str, ex: str
) -> None:
    """``CreateGroupRequest``: a new request replaces the user's earlier one."""
    sb.group_requests.pop((group_id, user_id), None)
    sb.group_requests[(group_id, user_id)] = {
        "groupID": group_id,
        "userID": user_id,
        "handleResult": 0,
        "reqMsg": req_msg,
        "handledMsg": "",
        "reqTime": sb.now_ms(),
        "handleUserID": "",
        "handledTime": 0,
        "ex": ex,
        "joinSource": join_source,
        "inviterUserID": inviter,
    }


async def _application_notification(sb: Sandbox, op: str, group_id: str, applicant: str, req_msg: str) -> None:
    """``JoinGroupApplicationNotification``: 1503 to the owner, the admins, the applicant and the operator."""
    user = sb.users[applicant]
    public = {"userID": applicant, "nickname": user["nickname"], "faceURL": user["faceURL"], "ex": user["ex"]}
    tips = {"group": group_info(sb, group_id), "applicant": public, "reqMsg": req_msg}
    managers = [m["userID"] for m in sorted_members(sb, group_id) if _is_manager(m["roleLevel"])]
    for user_id in dict.fromkeys([*managers, applicant, op]):
        await n.notify(sb, op, user_id, n.JOIN_GROUP_APPLICATION, tips)


def group_request(sb: Sandbox, request: dict[str, Any]) -> dict[str, Any]:
    """``Db2PbGroupRequest``."""
    user = sb.users.get(request["userID"])
    public = None if user is None else {k: user[k] for k in ("userID", "nickname", "faceURL", "ex")}
    return {
        "userInfo": public,
        "groupInfo": group_info(sb, request["groupID"]) if request["groupID"] in sb.groups else None,
        "handleResult": request["handleResult"],
        "reqMsg": request["reqMsg"],
        "handleMsg": request["handledMsg"],
        "reqTime": request["reqTime"],
        "handleUserID": request["handleUserID"],
        "handleTime": request["handledTime"],
        "ex": request["ex"],
        "joinSource": request["joinSource"],
        "inviterUserID": request["inviterUserID"],
    }


@route("/group/group_application_response")
async def group_application_response(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, applicant, result = body.string("groupID"), body.string("fromUserID"), body.integer("handleResult")
    check(bool(group_id) and bool(applicant) and -1 <= result <= 1)
    if result not in (AGREE, REFUSE):
        raise CodeError(1001, "HandleResult unknown")
    who = caller_of(caller)
    if not who.is_admin and not _is_manager(take_member(sb, group_id, who.user_id)["roleLevel"]):
        raise CodeError(1002, "no group owner or admin")
    take_group(sb, group_id)
    request = sb.group_requests.get((group_id, applicant))
    if request is None:
        raise CodeError(1004, "mongo: no documents in result")
    if request["handleResult"] != 0:
        raise CodeError(1206, "group request already processed")
    in_group = applicant in sb.members[group_id]
    if applicant not in sb.users:
        raise CodeError(1004, "user not found")
    # UpdateHandler: the result and message; the handler and the time stay as they were.
    request["handledMsg"], request["handleResult"] = body.string("handledMsg"), result
    handled = body.string("handledMsg")
    managers = [m["userID"] for m in sorted_members(sb, group_id) if _is_manager(m["roleLevel"])]
    if result == AGREE and not in_group:
        sb.add_members(
            group_id,
            [
                new_member(
                    sb,
                    group_id,
                    applicant,
                    MEMBER,
                    operator=who.user_id,
                    inviter=request["inviterUserID"],
                    join_source=request["joinSource"],
                )
            ],
        )
    kind = n.GROUP_APPLICATION_ACCEPTED if result == AGREE else n.GROUP_APPLICATION_REJECTED
    opener = op_user(sb, group_id, who.user_id)
    info = group_info(sb, group_id)
    for user_id in [*managers, applicant]:
        receiver = APPLICANT_RECEIVER if user_id == applicant else ADMIN_RECEIVER
        tips = {"group": info, "opUser": opener, "handleMsg": handled, "receiverAs": receiver}
        await n.notify(sb, who.user_id, user_id, kind, tips)
    if result == AGREE and not in_group:
        await _members_entered(sb, who.user_id, group_id, [applicant], inviter=request["inviterUserID"])
    return None


@route("/group/get_specified_user_group_request_info")
def get_specified_user_group_request_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_id = body.string("groupID"), body.string("userID")
    who = caller_of(caller)
    if user_id != who.user_id:  # the user themself, the group's owner and admins, or an app admin
        managers = [m["userID"] for m in sorted_members(sb, group_id) if _is_manager(m["roleLevel"])]
        if not sb.group_owner(group_id):
            raise CodeError(500, "runtime error: index out of range [0] with length 0")  # owners[0]
        if who.user_id not in managers and not who.is_admin:
            raise CodeError(1002, "opUser no permission")
    request = sb.group_requests.get((group_id, user_id))
    found = [] if request is None else [group_request(sb, request)]
    return {"total": len(found), "groupRequests": found or None}


@route("/group/get_recv_group_applicationList")
def get_recv_group_application_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: the requests to the groups any fromUserID manages.
    user_id = body.string("fromUserID")
    managed = [g for g, members in sb.members.items() if _is_manager(members.get(user_id, {}).get("roleLevel", 0))]
    requests = [r for (g, _), r in sb.group_requests.items() if g in managed]
    shown = page(body, requests)
    check(bool(user_id))
    return {"total": len(requests), "groupRequests": [group_request(sb, r) for r in shown or []] or None}


@route("/group/get_user_req_group_applicationList")
def get_user_req_group_application_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any userID's requests.
    user_id = body.string("userID")
    check(bool(user_id))
    requests = [r for (_, u), r in sb.group_requests.items() if u == user_id]
    shown = page(body, requests)
    if user_id not in sb.users:
        raise CodeError(1004, "record not found")
    return {"total": len(requests), "groupRequests": [group_request(sb, r) for r in shown or []] or None}


@route("/group/kick_group")
async def kick_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, kicked = body.string("groupID"), body.strings("kickedUserIDs")
    check(bool(group_id) and kicked is not None)
    assert kicked is not None
    take_group(sb, group_id)
    who = caller_of(caller)
    if not kicked:
        raise CodeError(1001, "KickedUserIDs empty")
    if len(set(kicked)) != len(kicked):
        raise CodeError(1001, "KickedUserIDs duplicate")
    if who.user_id in kicked:
        raise CodeError(1001, "opUserID in KickedUserIDs")
    owner = sb.group_owner(group_id)
    if not owner:
        raise CodeError(1004, "mongo: no documents in result")
    if owner in kicked:
        raise CodeError(1001, "ownerUID can not Kick")
    members = sb.members[group_id]
    op_member = members.get(who.user_id)
    for user_id in kicked:
        if user_id not in members:
            raise CodeError(1101, user_id)
        if not who.is_admin:
            if op_member is None:
                raise CodeError(1002, "opUserID no in group")
            if op_member["roleLevel"] == ADMIN and _is_manager(members[user_id]["roleLevel"]):
                raise CodeError(1002, "group admins cannot remove the group owner and other admins")
            if op_member["roleLevel"] not in (OWNER, ADMIN):
                raise CodeError(1002, "opUserID no permission")
    gone = [member_info(sb, members[u]) for u in kicked]
    sb.remove_members(group_id, kicked)
    tips = {
        "group": group_info(sb, group_id),
        "opUser": op_user(sb, group_id, who.user_id),
        "kickedUserList": gone,
        "operationTime": 0,
    } | member_version(sb, group_id)
    await n.notify(sb, who.user_id, group_id, n.MEMBER_KICKED, tips)
    for user_id in kicked:
        sb.freeze_conversation(user_id, f"sg_{group_id}")
    sb.after(
        "callbackAfterKickGroupCommand", {"groupID": group_id, "kickedUserIDs": kicked, "reason": body.string("reason")}
    )
    return None


@route("/group/quit_group")
async def quit_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id = body.string("groupID")
    check(bool(group_id))
    who = caller_of(caller)
    user_id = body.string("userID") or who.user_id
    if body.string("userID"):
        require_self_or_admin(caller, user_id)
    member = take_member(sb, group_id, user_id)
    if member["roleLevel"] == OWNER:
        raise CodeError(1002, "group owner can't quit")
    quitter = member_info(sb, member)
    sb.remove_members(group_id, [user_id])
    tips = {"group": group_info(sb, group_id), "quitUser": quitter, "operationTime": 0} | member_version(sb, group_id)
    await n.notify(sb, who.user_id, group_id, n.MEMBER_QUIT, tips)
    sb.freeze_conversation(user_id, f"sg_{group_id}")
    sb.after("callbackAfterQuitGroupCommand", {"groupID": group_id, "userID": user_id})
    return None


@route("/group/transfer_group")
async def transfer_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, old, new = body.string("groupID"), body.string("oldOwnerUserID"), body.string("newOwnerUserID")
    check(bool(group_id) and bool(old) and bool(new))
    group = take_group(sb, group_id)
    if group["status"] == DISMISSED:
        raise CodeError(1204)
    if old == new:
        raise CodeError(1001, "OldOwnerUserID == NewOwnerUserID")
    members = sb.members[group_id]
    missing = [u for u in (old, new) if u not in members]
    if missing:
        raise CodeError(1001, "user not in group " + ",".join(missing))
    who = caller_of(caller)
    if not who.is_admin and not (who.user_id == old and members[old]["roleLevel"] == OWNER):
        raise CodeError(1002, "no permission transfer group owner")
    if members[new]["muteEndTime"] > sb.now_ms():
        await _set_member_mute(sb, who, group_id, new, 0)
    # The old owner takes the new owner's role level (UpdateUserRoleLevels).
    members[old]["roleLevel"], members[new]["roleLevel"] = members[new]["roleLevel"], OWNER
    sb.version_log("group_member", group_id).changes([SORT_CHANGE_ID, old, new], "update")
    sb.after(
        "callbackAfterTransferGroupOwnerCommand", {"groupID": group_id, "oldOwnerUserID": old, "newOwnerUserID": new}
    )
    listed = {u: member_info(sb, members[u]) for u in (who.user_id, new, old) if u in members}
    tips = {
        "group": group_info(sb, group_id),
        "opUser": op_user(sb, group_id, who.user_id, listed.get(who.user_id)),
        "newGroupOwner": listed[new],
        "oldGroupOwner": "",
        "operationTime": 0,
        "oldGroupOwnerInfo": listed[old],
    } | member_version(sb, group_id)
    await n.notify(sb, who.user_id, group_id, n.GROUP_OWNER_TRANSFERRED, tips)
    return None


@route("/group/dismiss_group")
async def dismiss_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id = body.string("groupID")
    check(bool(group_id))
    owner = sb.group_owner(group_id)
    if not owner:
        raise CodeError(1004, "mongo: no documents in result")
    who = caller_of(caller)
    if not who.is_admin and owner != who.user_id:
        raise CodeError(1002, "not group owner")
    group = take_group(sb, group_id)
    delete_members = body.boolean("deleteMember")
    if group["status"] == DISMISSED and not delete_members:
        raise CodeError(1204, "group status is dismissed")
    before = group_info(sb, group_id)  # the tips show the group as it was before the dismissal
    if delete_members:
        sb.dismiss(group_id, delete_members=True, owner=owner)
        return None
    sb.dismiss(group_id, delete_members=False, owner=owner)  # its callback still lists the members
    tips = {"group": before, "opUser": op_user(sb, group_id, who.user_id), "operationTime": 0}
    # Once this is pushed, the push service dismisses the group again, dropping every member
    # (messages._deliver).
    await n.notify(sb, who.user_id, group_id, n.GROUP_DISMISSED, tips)
    return None


# -- mutes ----------------------------------------------------------------------------------------------


@route("/group/mute_group_member")
async def mute_group_member(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_id, seconds = body.string("groupID"), body.string("userID"), body.integer("mutedSeconds")
    check(bool(group_id) and bool(user_id) and seconds > 0)
    await _set_member_mute(sb, caller_of(caller), group_id, user_id, seconds)
    return None


@route("/group/cancel_mute_group_member")
async def cancel_mute_group_member(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id, user_id = body.string("groupID"), body.string("userID")
    check(bool(group_id) and bool(user_id))
    await _set_member_mute(sb, caller_of(caller), group_id, user_id, 0)
    return None


async def _set_member_mute(sb: Sandbox, who: Caller, group_id: str, user_id: str, seconds: int) -> None:
    """``MuteGroupMember`` (``seconds`` > 0) and ``CancelMuteGroupMember``: only the owner mutes
    an admin, the owner or an admin a member, nobody the owner."""
    member = take_member(sb, group_id, user_id)
    if not who.is_admin:
        role = take_member(sb, group_id, who.user_id)["roleLevel"]
        if (
            member["roleLevel"] == OWNER
            or (member["roleLevel"] == ADMIN and role != OWNER)
            or (member["roleLevel"] == MEMBER and not _is_manager(role))
        ):
            raise CodeError(1002, "no permission to set the member's mute")
    member["muteEndTime"] = sb.now_ms() + seconds * 1000 if seconds else 0
    sb.version_log("group_member", group_id).change(user_id, "update")
    members = sb.members[group_id]
    listed = {u: member_info(sb, members[u]) for u in (who.user_id, user_id) if u in members}
    tips: dict[str, Any] = {
        "group": group_info(sb, group_id),
        "opUser": op_user(sb, group_id, who.user_id),
        "operationTime": 0,
        "mutedUser": listed.get(user_id),
    }
    kind = n.GROUP_MEMBER_MUTED if seconds else n.GROUP_MEMBER_CANCEL_MUTED
    if seconds:
        tips["mutedSeconds"] = seconds
    await n.notify(sb, who.user_id, group_id, kind, tips | member_version(sb, group_id))


@route("/group/mute_group")
async def mute_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    await _set_group_status(sb, caller, body, MUTED)
    return None


@route("/group/cancel_mute_group")
async def cancel_mute_group(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    await _set_group_status(sb, caller, body, GROUP_OK)
    return None


async def _set_group_status(sb: Sandbox, caller: Caller | None, body: Body, status: int) -> None:
    group_id = body.string("groupID")
    check(bool(group_id))
    who = caller_of(caller)
    if not who.is_admin and not _is_manager(take_member(sb, group_id, who.user_id)["roleLevel"]):
        raise CodeError(1002, "no group owner or admin")
    take_group(sb, group_id)["status"] = status
    sb.version_log("group_member", group_id).change(GROUP_CHANGE_ID, "update")
    tips = {"group": group_info(sb, group_id), "opUser": op_user(sb, group_id, who.user_id), "operationTime": 0}
    kind = n.GROUP_MUTED if status == MUTED else n.GROUP_CANCEL_MUTED
    await n.notify(sb, who.user_id, group_id, kind, tips | member_version(sb, group_id))


@route("/group/set_group_member_info")
async def set_group_member_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    """``SetGroupMemberInfo``: nickname, face, role and ex of members (wrappers: absent leaves them), with
    v3.8.3's permission rules in its order; a member may change only themself, and nobody's role to owner."""
    members = body.objects("members") or []
    if not members:
        raise CodeError(1001, "members empty")
    who = caller_of(caller)
    by_group: dict[str, list[Body]] = {}
    for member in members:
        role = member.optional_integer("roleLevel")
        if role == OWNER:
            raise CodeError(1002, "cannot set ungroup owner")
        if role is not None and role not in (ADMIN, MEMBER):
            raise CodeError(1001, "invalid role level")
        by_group.setdefault(member.string("groupID"), []).append(member)
    for group_id, changes in by_group.items():
        _may_set_members(sb, who, group_id, changes)
    for member in members:
        group_id, user_id = member.string("groupID"), member.string("userID")
        record = sb.members[group_id][user_id]
        fields: dict[str, object] = {
            k: v for k in ("nickname", "faceURL", "ex") if (v := member.optional_string(k)) is not None
        }
        role = member.optional_integer("roleLevel")
        if role is not None:
            fields["roleLevel"] = role
        if fields:  # GroupMemberMgo.Update: a change of role is a change of the members' order too
            record.update(fields)
            changed = [SORT_CHANGE_ID, user_id] if role is not None else [user_id]
            sb.version_log("group_member", group_id).changes(changed, "update")
    for member in members:
        await _member_info_set(sb, who, member)
    return None


def _may_set_members(sb: Sandbox, who: Caller, group_id: str, changes: list[Body]) -> None:
    op = who.user_id
    user_ids: list[str] = []
    for change in changes:
        user_id = change.string("userID")
        if user_id in user_ids:
            raise CodeError(1001, f"repeat group {group_id} user {user_id}")
        user_ids.append(user_id)
    if op not in user_ids:
        user_ids.append(op)
    found = [m for u, m in sb.members.get(group_id, {}).items() if u in user_ids]  # FindGroupMembers
    mine = next((m for m in found if m["userID"] == op), None)
    missing = len(user_ids) - len(found)
    if missing == 1:  # the op alone may be missing: an app admin
        if mine is not None:
            raise CodeError(1001, "user not in group")
        if not who.is_admin:
            raise CodeError(1002, "user not in group")
        return
    if missing:
        raise CodeError(1001, "user not in group")
    if who.is_admin or mine is None:
        return
    role = mine["roleLevel"]
    for member in found:
        if role == ADMIN and member["roleLevel"] == OWNER:
            raise CodeError(1002, "admin can not change group owner")
        if role == ADMIN and member["roleLevel"] == ADMIN and member["userID"] != op:
            raise CodeError(1002, "admin can not change other group admin")
        if role == MEMBER and not (member["roleLevel"] == MEMBER and member["userID"] == op):
            raise CodeError(1002, "ordinary users can not change other role level")
        if role not in (OWNER, ADMIN, MEMBER) and member["roleLevel"] >= role:
            raise CodeError(1002, "can not change higher role level")
    wanted = next((c.optional_integer("roleLevel") for c in changes if c.string("userID") == op), None)
    if wanted is not None:
        if wanted > role:
            raise CodeError(1002, "can not improve role level by self")
        if role == OWNER:
            raise CodeError(1001, "group owner can not change own role level")


async def _member_info_set(sb: Sandbox, who: Caller, change: Body) -> None:
    """The notifications of one change: 1517 or 1518 for a role, 1516 for a nickname, face or ex."""
    group_id, user_id = change.string("groupID"), change.string("userID")
    members = sb.members[group_id]
    log = sb.version_log("group_member", group_id)
    role = change.optional_integer("roleLevel")
    tips = {"group": group_info(sb, group_id), "opUser": op_user(sb, group_id, who.user_id),
            "changedUser": member_info(sb, members[user_id])} | member_version(sb, group_id)  # fmt: skip
    if role is not None:
        kind = n.GROUP_MEMBER_SET_TO_ADMIN if role == ADMIN else n.GROUP_MEMBER_SET_TO_ORDINARY
        await n.notify(sb, who.user_id, group_id, kind, tips)
    if any(change.optional_string(k) is not None for k in ("nickname", "faceURL", "ex")):
        sorted_by = {"groupSortVersion": log.element_version(SORT_CHANGE_ID)}  # setSortVersion
        await n.notify(sb, who.user_id, group_id, n.GROUP_MEMBER_INFO_SET, tips | sorted_by)


# -- the SDK's syncs ------------------------------------------------------------------------------------


@route("/group/get_incremental_join_groups")
def get_incremental_join_groups(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    require_self_or_admin(caller, user_id)
    return incremental(sb, "group", user_id, body, lambda g: group_info(sb, g) if g in sb.groups else None)


@route("/group/get_full_join_group_ids")
def get_full_join_group_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3: any user's groups
    check(bool(user_id))
    return full_ids(sb, "group", user_id, [g for g, members in sb.members.items() if user_id in members], body)


@route("/group/get_full_group_member_user_ids")
def get_full_group_member_user_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    group_id = body.string("groupID")  # no check in v3.8.3: any group's members
    check(bool(group_id))
    ids = [m["userID"] for m in sorted_members(sb, group_id)]
    return full_ids(sb, "group_member", group_id, ids, body)


def _member_sync(sb: Sandbox, group_id: str, request: Body) -> dict[str, Any]:
    """``GetIncrementalGroupMember`` for one group: the member log without the group-change and
    sort entries, and the group itself when the caller gets everything or the group changed."""
    members = sb.members.get(group_id, {})
    reply = incremental(
        sb,
        "group_member",
        group_id,
        request,
        lambda u: member_info(sb, members[u]) if u in members else None,
        skip=(GROUP_CHANGE_ID, SORT_CHANGE_ID),
    )
    changed = reply.pop("skipped")
    sort_version = reply.pop("sortVersion")
    reply["group"] = group_info(sb, group_id) if reply["full"] or changed else None
    return reply | {"sortVersion": sort_version}


@route("/group/get_incremental_group_members")
def get_incremental_group_members(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No membership check in v3.8.3.
    group_id = body.string("groupID")
    if take_group(sb, group_id)["status"] == DISMISSED:
        raise CodeError(1204)
    return _member_sync(sb, group_id, body)


@route("/group/get_incremental_group_members_batch")
def get_incremental_group_members_batch(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No membership check in v3.8.3; dismissed groups are left out. insert and update are null
    # when empty: the SDK reads insert[0] of any list it is given.
    wanted = {r.string("groupID"): r for r in body.objects("reqList") or []}
    live = [g for g in wanted if g in sb.groups and sb.groups[g]["status"] != DISMISSED]
    if not live:
        raise CodeError(500, "targetKeys is empty")
    return {"respList": {g: _member_sync(sb, g, wanted[g]) for g in live}}
