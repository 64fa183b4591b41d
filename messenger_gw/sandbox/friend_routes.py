"""``/friend/*`` (``internal/rpc/relation`` of v3.8.3): friends, friend requests, the blacklist.

Friendships live in ``Sandbox.friends`` (owner -> friend -> a ``FriendInfoOnly``-shaped record,
``createTime`` in ms), each direction on its own: deleting a friend removes only the owner's
side. Requests are in ``Sandbox.friend_requests`` by (from, to), blacklists in
``Sandbox.blacks``. Every change to an owner's friends is recorded in
``Sandbox.version_log("friend", owner)``, which the incremental sync answers from; the SDK learns
of changes from the notifications (``notifications.py``) and then syncs.

Permissions are v3.8.3's, holes included: ``get_designated_friend_apply``,
``get_designated_friends``, ``update_friends``, ``get_full_friend_user_ids`` and ``is_friend``
take any user.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from . import notifications as n
from .envelope import Body, CodeError
from .routing import caller_of, check, require_self_or_admin, route
from .state import SORT_CHANGE_ID, Caller, Sandbox

AGREE, REFUSE = 1, -1
BECOME_FRIEND_BY_IMPORT, BECOME_FRIEND_BY_APPLY = 1, 2
PARAM_MAX_LENGTH = 1000  # protocol:constant/limit.go, the bound of ImportFriendReq.Check


# -- the shared sync helpers -----------------------------------------------------------------------------


def id_hash(ids: list[str]) -> int:
    """``hashutil.IdHash``: the first 8 bytes of the MD5 of the JSON list, big-endian; 0 for none."""
    if not ids:
        return 0
    digest = hashlib.md5(orjson.dumps(ids), usedforsecurity=False).digest()
    return int(struct.unpack(">Q", digest[:8])[0])


def incremental(
    sb: Sandbox, kind: str, owner: str, body: Body, record: Callable[[str], Any], *, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """``incrversion.Option.Build``: ``full`` with no lists unless the caller's versionID is the
    log's; then what changed since its version. ``record(id)`` gives an item's current value
    (None for one that is gone). The sort entry gives ``sortVersion``; the IDs in ``skip`` are
    left out, and ``skipped`` says whether any of them changed."""
    log = sb.version_log(kind, owner)
    full, changed = log.since(body.integer("version"), body.string("versionID"))
    sort_version, skipped = 0, False
    for ids in changed.values():
        if SORT_CHANGE_ID in ids:
            sort_version = log.element_version(SORT_CHANGE_ID)
        skipped = skipped or any(i in skip for i in ids if i != SORT_CHANGE_ID)
        ids[:] = [i for i in ids if i != SORT_CHANGE_ID and i not in skip]
    lists = {op: [item for item in map(record, ids) if item is not None] or None for op, ids in changed.items()}
    reply: dict[str, Any] = {
        "version": log.version,
        "versionID": log.version_id,
        "full": full,
        "delete": changed["delete"] or None,
        "insert": lists["insert"],
        "update": lists["update"],
    }
    if kind != "conversation":  # GetIncrementalConversationResp has no sortVersion
        reply["sortVersion"] = sort_version
    if skip:
        reply["skipped"] = skipped or any(changed.values())
    return reply


def full_ids(sb: Sandbox, kind: str, owner: str, ids: list[str], body: Body) -> dict[str, Any]:
    """``GetFull*IDs``: the version is the IDs' hash; a caller holding that hash is told
    ``equal`` and gets no IDs (so does one sending 0 when there are none)."""
    digest = id_hash(ids)
    equal = body.integer("idHash") == digest
    key = {"friend": "userIDs", "group": "groupIDs", "group_member": "userIDs"}[kind]
    return {
        "version": digest,
        "versionID": sb.version_log(kind, owner).version_id,
        "equal": equal,
        key: None if equal else ids or None,
    }


# -- shapes -------------------------------------------------------------------------------------------------


def public_user(sb: Sandbox, user_id: str) -> dict[str, Any] | None:
    user = sb.users.get(user_id)
    return None if user is None else {k: user[k] for k in ("userID", "nickname", "faceURL", "ex")}


def friend_info(sb: Sandbox, record: dict[str, Any]) -> dict[str, Any]:
    """``FriendsDB2Pb``: ``createTime`` in seconds, the friend as a UserInfo with only its ID,
    nickname, face and ex."""
    user = public_user(sb, record["friendUserID"]) or {"userID": "", "nickname": "", "faceURL": "", "ex": ""}
    return {
        "ownerUserID": record["ownerUserID"],
        "remark": record["remark"],
        "createTime": record["createTime"] // 1000,
        "friendUser": user | {"createTime": 0, "appMangerLevel": 0, "globalRecvMsgOpt": 0},
        "addSource": record["addSource"],
        "operatorUserID": record["operatorUserID"],
        "ex": record["ex"],
        "isPinned": record["isPinned"],
    }


def friend_request(sb: Sandbox, request: dict[str, Any]) -> dict[str, Any]:
    """``FriendRequestDB2Pb``."""
    sender = sb.users.get(request["fromUserID"], {})
    receiver = sb.users.get(request["toUserID"], {})
    return {
        "fromUserID": request["fromUserID"],
        "fromNickname": sender.get("nickname", ""),
        "fromFaceURL": sender.get("faceURL", ""),
        "toUserID": request["toUserID"],
        "toNickname": receiver.get("nickname", ""),
        "toFaceURL": receiver.get("faceURL", ""),
        "handleResult": request["handleResult"],
        "reqMsg": request["reqMsg"],
        "createTime": request["createTime"],
        "handlerUserID": request["handlerUserID"],
        "handleMsg": request["handleMsg"],
        "handleTime": request["handleTime"],
        "ex": request["ex"],
    }


def black_info(sb: Sandbox, record: dict[str, Any], *, seconds: bool) -> dict[str, Any]:
    """``BlackInfo``: the list route gives ``createTime`` in seconds, the designated one in ms."""
    return {
        "ownerUserID": record["ownerUserID"],
        "createTime": record["createTime"] // 1000 if seconds else record["createTime"],
        "blackUserInfo": public_user(sb, record["blockUserID"]),
        "addSource": record["addSource"],
        "operatorUserID": record["operatorUserID"],
        "ex": record["ex"],
    }


def _page(body: Body, items: list[Any]) -> list[Any]:
    """A page of ``items``: ``Check()`` wants pageNumber >= 1; showNumber 0 gives nothing."""
    pagination = body.object("pagination")
    check(pagination is not None and pagination.integer("pageNumber") >= 1)
    assert pagination is not None
    number, size = pagination.integer("pageNumber"), pagination.integer("showNumber")
    return items[(number - 1) * size : number * size] if size > 0 else []


def _sorted_friends(sb: Sandbox, owner: str) -> list[dict[str, Any]]:
    """``friendSort``: pinned first, then in the order they became friends."""
    return sorted(sb.friends.get(owner, {}).values(), key=lambda f: not f["isPinned"])


def _from_to(from_user: str, to_user: str) -> dict[str, Any]:
    return {"fromToUserID": {"fromUserID": from_user, "toUserID": to_user}}


def _check_users(sb: Sandbox, *user_ids: str) -> None:
    if any(u not in sb.users for u in user_ids):
        raise CodeError(1004, "user not found")


# -- the login sync and the first message ---------------------------------------------------------------


@route("/friend/get_incremental_friends")
def get_incremental_friends(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    require_self_or_admin(caller, user_id)
    friends = sb.friends.get(user_id, {})
    return incremental(sb, "friend", user_id, body, lambda f: friend_info(sb, friends[f]) if f in friends else None)


@route("/friend/get_full_friend_user_ids")
def get_full_friend_user_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3: any user's friend list
    check(bool(user_id))
    return full_ids(sb, "friend", user_id, [f["friendUserID"] for f in _sorted_friends(sb, user_id)], body)


@route("/friend/get_designated_friends")
def get_designated_friends(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, wanted = body.string("ownerUserID"), body.strings("friendUserIDs")  # no check in v3.8.3
    check(bool(owner) and wanted is not None)
    assert wanted is not None
    if len(set(wanted)) != len(wanted):
        raise CodeError(1001, "friend userID repeated")
    friends = sb.friends.get(owner, {})
    found = [friend_info(sb, friends[f]) for f in wanted if f in friends]
    return {"friendsInfo": found or None}


# -- requests -------------------------------------------------------------------------------------------


@route("/friend/add_friend")
async def add_friend(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    from_user, to_user = body.string("fromUserID"), body.string("toUserID")
    check(bool(to_user) and bool(from_user))
    require_self_or_admin(caller, from_user)
    if to_user == from_user:
        raise CodeError(1301, "req.ToUserID")
    _check_users(sb, to_user, from_user)
    if to_user in sb.friends.get(from_user, {}) and from_user in sb.friends.get(to_user, {}):
        raise CodeError(1304, "already friends has f")
    request = sb.friend_requests.get((from_user, to_user))
    fields = {
        "handleResult": 0,
        "handleMsg": "",
        "reqMsg": body.string("reqMsg"),
        "ex": body.string("ex"),
        "createTime": sb.now_ms(),
    }
    if request is None:  # a new one; an earlier one is reopened with the new message
        request = {"fromUserID": from_user, "toUserID": to_user, "handlerUserID": "", "handleTime": 0}
        sb.friend_requests[(from_user, to_user)] = request
    request.update(fields)
    await n.notify(sb, from_user, to_user, n.FRIEND_APPLICATION, _from_to(from_user, to_user))
    return None


@route("/friend/add_friend_response")
async def add_friend_response(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    from_user, to_user, result = body.string("fromUserID"), body.string("toUserID"), body.integer("handleResult")
    check(bool(to_user) and bool(from_user))
    who = require_self_or_admin(caller, to_user)
    if result not in (AGREE, REFUSE):
        raise CodeError(1001, "req.HandleResult != -1/1")
    request = sb.friend_requests.get((from_user, to_user))
    if request is None:
        raise CodeError(1004, "mongo: no documents in result")
    if request["handleResult"] != 0:
        if result == AGREE:
            raise CodeError(1001, "the friend request has been processed")
        # RefuseFriendRequest answers with a plain error, which OpenIM reports as a 500.
        raise CodeError(500, "", msg=f"friend request from {from_user} to {to_user} has already been processed")
    handle_msg = body.string("handleMsg")
    # FriendRequestMgo.Update writes only the fields that are not empty.
    request.update(handleResult=result, handleTime=sb.now_ms(), **({"handleMsg": handle_msg} if handle_msg else {}))
    tips = _from_to(from_user, to_user) | {"handleMsg": handle_msg}
    if result == REFUSE:
        await n.notify(sb, to_user, from_user, n.FRIEND_APPLICATION_REJECTED, tips)
        return None
    request["handlerUserID"] = who.user_id
    reverse = sb.friend_requests.get((to_user, from_user))
    if reverse is not None and reverse["handleResult"] == 0:  # the other way round is agreed with it
        reverse.update(handleResult=AGREE, handleTime=request["handleTime"], handlerUserID=who.user_id)
    for owner, friend in ((to_user, from_user), (from_user, to_user)):
        if friend not in sb.friends.get(owner, {}):
            _befriend(sb, owner, friend, operator=from_user)
    await n.notify(
        sb, to_user, from_user, n.FRIEND_APPLICATION_APPROVED, tips | {"friendVersion": 0, "friendVersionID": ""}
    )
    return None


def _befriend(sb: Sandbox, owner: str, friend: str, *, operator: str) -> None:
    _friend_record(sb, owner, friend, operator=operator, add_source=BECOME_FRIEND_BY_APPLY)
    sb.version_log("friend", owner).change(friend, "insert")


def _friend_record(sb: Sandbox, owner: str, friend: str, *, operator: str, add_source: int) -> None:
    sb.friends.setdefault(owner, {})[friend] = {
        "ownerUserID": owner,
        "friendUserID": friend,
        "remark": "",
        "createTime": sb.now_ms(),
        "addSource": add_source,
        "operatorUserID": operator,
        "ex": "",
        "isPinned": False,
    }


@route("/friend/import_friend")
async def import_friend(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    """``ImportFriends`` (admin): the owner and each friend become friends both ways at once. A side that
    is a friendship already is left as it is (``BecomeFriends``), so importing again changes nothing;
    but one unknown user, the owner among the friends or a friend named twice fails the whole call."""
    owner, friend_ids = body.string("ownerUserID"), body.strings("friendUserIDs")
    check(bool(owner) and friend_ids is not None)
    assert friend_ids is not None
    check(len(friend_ids) <= PARAM_MAX_LENGTH)
    who = caller_of(caller)
    if not who.is_admin:
        raise CodeError(1002, f"user {who.user_id} is not admin userID")
    _check_users(sb, owner, *friend_ids)
    if owner in friend_ids:
        raise CodeError(1301, "can not add yourself")
    if len(set(friend_ids)) != len(friend_ids):
        raise CodeError(1001, "friend userID repeated")
    await sb.before("callbackBeforeImportFriendsCommand", {"ownerUserID": owner, "friendUserIDs": friend_ids})
    mine = [f for f in friend_ids if f not in sb.friends.get(owner, {})]
    theirs = [f for f in friend_ids if owner not in sb.friends.get(f, {})]
    for friend in mine:
        _friend_record(sb, owner, friend, operator=who.user_id, add_source=BECOME_FRIEND_BY_IMPORT)
    for friend in theirs:
        _friend_record(sb, friend, owner, operator=who.user_id, add_source=BECOME_FRIEND_BY_IMPORT)
    # FriendMgo.Create: one version per owner for the rows inserted together.
    if mine:
        sb.version_log("friend", owner).changes(mine, "insert")
    for friend in theirs:
        sb.version_log("friend", friend).change(owner, "insert")
    for friend in friend_ids:  # FriendApplicationAgreedNotification for each, whether new or not
        tips = _from_to(owner, friend) | {"handleMsg": "", "friendVersion": 0, "friendVersionID": ""}
        await n.notify(sb, friend, owner, n.FRIEND_APPLICATION_APPROVED, tips)
    sb.after("callbackAfterImportFriendsCommand", {"ownerUserID": owner, "friendUserIDs": friend_ids})
    return None


@route("/friend/get_designated_friend_apply")
def get_designated_friend_apply(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any pair's requests, both ways round.
    from_user, to_user = body.string("fromUserID"), body.string("toUserID")
    check(bool(from_user) and bool(to_user))
    found = [sb.friend_requests[k] for k in ((from_user, to_user), (to_user, from_user)) if k in sb.friend_requests]
    return {"friendRequests": [friend_request(sb, r) for r in found] or None}


@route("/friend/get_friend_apply_list")
def get_friend_apply_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    """The requests to the user; the answer's key is ``FriendRequests`` (relation.proto's spelling)."""
    user_id = body.string("userID")
    check(bool(user_id))
    requests = [r for (_, to), r in sb.friend_requests.items() if to == user_id]
    shown = _page(body, requests)
    require_self_or_admin(caller, user_id)
    return {"FriendRequests": [friend_request(sb, r) for r in shown] or None, "total": len(requests)}


@route("/friend/get_self_friend_apply_list")
def get_self_friend_apply_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    check(bool(user_id))
    requests = [r for (sender, _), r in sb.friend_requests.items() if sender == user_id]
    shown = _page(body, requests)
    require_self_or_admin(caller, user_id)
    return {"friendRequests": [friend_request(sb, r) for r in shown] or None, "total": len(requests)}


# -- friends --------------------------------------------------------------------------------------------


@route("/friend/get_friend_list")
def get_friend_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    friends = _sorted_friends(sb, user_id)
    shown = _page(body, friends)
    check(bool(user_id))
    require_self_or_admin(caller, user_id)
    return {"friendsInfo": [friend_info(sb, f) for f in shown] or None, "total": len(friends)}


@route("/friend/is_friend")
def is_friend(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any two users.
    first, second = body.string("userID1"), body.string("userID2")
    check(bool(first) and bool(second))
    return {
        "inUser1Friends": second in sb.friends.get(first, {}),
        "inUser2Friends": first in sb.friends.get(second, {}),
    }


@route("/friend/delete_friend")
async def delete_friend(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, friend = body.string("ownerUserID"), body.string("friendUserID")
    check(bool(owner) and bool(friend))
    require_self_or_admin(caller, owner)
    # Only the owner's side goes, and a user who was no friend is "deleted" all the same.
    sb.friends.get(owner, {}).pop(friend, None)
    sb.version_log("friend", owner).change(friend, "delete")
    await n.notify(
        sb, owner, friend, n.FRIEND_DELETED, _from_to(owner, friend) | {"friendVersion": 0, "friendVersionID": ""}
    )
    return None


@route("/friend/update_friends")
async def update_friends(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any owner's friends. Remark, isPinned and ex are wrappers: absent or
    # null leaves them as they are.
    owner, friend_ids = body.string("ownerUserID"), body.strings("friendUserIDs")
    check(bool(owner) and friend_ids is not None)
    assert friend_ids is not None
    if not friend_ids:
        raise CodeError(1001, "friendIDList is empty")
    if len(set(friend_ids)) != len(friend_ids):
        raise CodeError(1001, "friendIDList repeated")
    changes: dict[str, Any] = {}
    for name, read in (("isPinned", body.boolean), ("remark", body.string), ("ex", body.string)):
        if body.has(name):
            changes[name] = read(name)
    friends = sb.friends.get(owner, {})
    if changes:
        for friend_id in friend_ids:
            if friend_id in friends:
                friends[friend_id].update(changes)
        sort = [SORT_CHANGE_ID] if "isPinned" in changes else []
        sb.version_log("friend", owner).changes([*sort, *friend_ids], "update")
    tips = {
        "fromToUserID": {"fromUserID": "", "toUserID": owner},
        "friendIDs": friend_ids,
        "friendVersion": 0,
        "friendVersionID": "",
    }
    await n.notify(sb, owner, owner, n.FRIENDS_INFO_UPDATE, tips)
    return None


# -- the blacklist ----------------------------------------------------------------------------------------


@route("/friend/add_black")
async def add_black(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, black = body.string("ownerUserID"), body.string("blackUserID")
    check(bool(owner) and bool(black))
    who = require_self_or_admin(caller, owner)
    _check_users(sb, owner, black)
    blacks = sb.blacks.setdefault(owner, {})
    if black in blacks:  # the unique index (owner, block) refuses a second one
        raise CodeError(500, "", msg="E11000 duplicate key error collection: openim_v3.black")
    blacks[black] = {
        "ownerUserID": owner,
        "blockUserID": black,
        "createTime": sb.now_ms(),
        "addSource": 0,
        "operatorUserID": who.user_id,
        "ex": body.string("ex"),
    }
    await n.notify(sb, owner, black, n.BLACK_ADDED, _from_to(owner, black))
    return None


@route("/friend/remove_black")
async def remove_black(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, black = body.string("ownerUserID"), body.string("blackUserID")
    check(bool(owner) and bool(black))
    require_self_or_admin(caller, owner)
    sb.blacks.get(owner, {}).pop(black, None)
    await n.notify(sb, owner, black, n.BLACK_DELETED, _from_to(owner, black))
    return None


@route("/friend/get_black_list")
def get_black_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    check(bool(user_id))
    blacks = list(sb.blacks.get(user_id, {}).values())
    shown = _page(body, blacks)
    require_self_or_admin(caller, user_id)
    return {"blacks": [black_info(sb, b, seconds=True) for b in shown] or None, "total": len(blacks)}


@route("/friend/get_specified_blacks")
def get_specified_blacks(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, wanted = body.string("ownerUserID"), body.strings("userIDList") or []
    require_self_or_admin(caller, owner)
    if not wanted:
        raise CodeError(1001, "userIDList is empty")
    if len(set(wanted)) != len(wanted):
        raise CodeError(1001, "userIDList repeated")
    blacks = sb.blacks.get(owner, {})
    found = [black_info(sb, blacks[u], seconds=False) for u in wanted if u in blacks]
    return {"blacks": found, "total": len(found)}  # made with make(): [] when none
