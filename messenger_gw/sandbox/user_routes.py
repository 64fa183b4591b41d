"""``/user/*`` (contract section 3)."""

from __future__ import annotations

from typing import Any

from . import notifications as n
from .envelope import Body, CodeError
from .routing import caller_of, check, require_admin, require_self_or_admin, route
from .state import Caller, Sandbox


def _valid_user_id(user_id: str) -> bool:
    # protocol:util/datautil/string.go: Unicode letters, digits or '_'.
    return bool(user_id) and all(ch.isalnum() or ch == "_" for ch in user_id)


@route("/user/user_register")
async def user_register(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    users = body.objects("users")
    check(users is not None)
    assert users is not None
    check(all(_valid_user_id(u.string("userID")) and u.string("nickname") for u in users))
    require_admin(caller)
    ids = [u.string("userID") for u in users]
    if not ids:
        raise CodeError(1001, "users is empty")
    if len(set(ids)) != len(ids):
        raise CodeError(1001, "userID repeated")
    if any(":" in user_id for user_id in ids):
        raise CodeError(1001, "userID contains ':' is invalid userID")
    if any(user_id in sb.users for user_id in ids):
        # The whole batch fails if any one ID exists.
        raise CodeError(1102, "userID registered already")
    infos = [{"userID": u.string("userID"), "nickname": u.string("nickname"), "faceURL": u.string("faceURL"),
              "ex": u.string("ex")} for u in users]  # fmt: skip
    await sb.before("callbackBeforeUserRegisterCommand", {"users": infos})
    for u in users:
        sb.add_user(u.string("userID"), nickname=u.string("nickname"), face_url=u.string("faceURL"), ex=u.string("ex"))
    sb.after("callbackAfterUserRegisterCommand", {"users": [dict(sb.users[i["userID"]]) for i in infos]})
    return None


@route("/user/get_users_info")
def get_users_info(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_ids = body.strings("userIDs")
    check(user_ids is not None)
    assert user_ids is not None
    found = [dict(sb.users[u]) for u in user_ids if u in sb.users]
    return {"usersInfo": found or None}


@route("/user/account_check")
def account_check(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_ids = body.strings("checkUserIDs") or []
    check(len(set(user_ids)) == len(user_ids))
    require_admin(caller)
    results = [{"userID": u, "accountStatus": 1 if u in sb.users else 0} for u in user_ids]
    return {"results": results or None}


@route("/user/update_user_info_ex")
def update_user_info_ex(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    info = body.object("userInfo")
    check(info is not None and bool(info.string("userID")))
    assert info is not None
    user_id = info.string("userID")
    require_self_or_admin(caller, user_id)
    user = sb.users.get(user_id)
    if user is None:
        raise CodeError(1004, "user not found")
    # Wrapper fields: absent or null leaves the value unchanged.
    for key in ("nickname", "faceURL", "ex"):
        value = info.optional_string(key)
        if value is not None:
            user[key] = value
    opt = info.optional_integer("globalRecvMsgOpt")
    if opt is not None:
        user["globalRecvMsgOpt"] = opt
    return None


@route("/user/set_global_msg_recv_opt")
async def set_global_msg_recv_opt(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any user's global receive option.
    user_id, option = body.string("userID"), body.integer("globalRecvMsgOpt")
    check(0 <= option <= 2 and bool(user_id))
    who = caller_of(caller)
    user = sb.users.get(user_id)
    if user is None:
        raise CodeError(1004, "record not found")
    user["globalRecvMsgOpt"] = option
    # UserInfoUpdatedNotification: from the caller to the user changed.
    await n.notify(sb, who.user_id, user_id, n.USER_INFO_UPDATED, {"userID": user_id})
    return None


@route("/user/subscribe_users_status")
def subscribe_users_status(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # A no-op in v3.8.3 (the SDK subscribes over the WebSocket, 2005), past its Check().
    check(bool(body.string("userID")) and body.strings("userIDs") is not None and 0 < body.integer("genre") < 3)
    return None


@route("/user/get_subscribe_users_status")
def get_subscribe_users_status(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    check(bool(body.string("userID")))  # a no-op in v3.8.3 too: nobody's status
    return None
