"""``/auth/*`` (contract section 2)."""

from __future__ import annotations

from typing import Any

from .envelope import Body, CodeError
from .routing import check, require_admin, route
from .state import ADMIN_PLATFORM_ID, Caller, Sandbox


@route("/auth/get_admin_token")
def get_admin_token(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    check(bool(user_id))
    if body.string("secret") != sb.config.secret:
        raise CodeError(1002, "secret invalid")
    if not sb.is_admin(user_id):
        admins = " ".join(sb.config.admin_user_ids)
        raise CodeError(1001, f"userID is error., userID={user_id}, adminUserID=[{admins}]")
    if user_id not in sb.users:
        raise CodeError(1004, "user not found")
    token, lifetime = sb.issue_token(user_id, ADMIN_PLATFORM_ID)
    return {"token": token, "expireTimeSeconds": lifetime}


@route("/auth/get_user_token")
def get_user_token(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id, platform_id = body.string("userID"), body.integer("platformID")
    check(bool(user_id))
    require_admin(caller, "caller is not admin userID")
    if platform_id == ADMIN_PLATFORM_ID:
        raise CodeError(1002, "platformID invalid. platformID must not be adminPlatformID")
    check(1 <= platform_id <= 9)
    if sb.is_admin(user_id):
        raise CodeError(1002, "don't get Admin token")
    user = sb.users.get(user_id)
    if user is None:
        raise CodeError(1004, "record not found")
    if user["appMangerLevel"] >= 3:
        raise CodeError(1001, "app account can`t get token")
    token, lifetime = sb.issue_token(user_id, platform_id)
    return {"token": token, "expireTimeSeconds": lifetime}


@route("/auth/parse_token")
def parse_token(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    parsed, expires_at = sb.verify_token(body.string("token"))
    return {"userID": parsed.user_id, "platformID": parsed.platform_id, "expireTimeSeconds": expires_at}


@route("/auth/force_logout")
def force_logout(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id, platform_id = body.string("userID"), body.integer("platformID")
    check(bool(user_id) and 1 <= platform_id <= 10)
    require_admin(caller)
    sb.kick(user_id, platform_id)
    sb.connections.kick(user_id, platform_id)  # KickUserOffline: 2002 to the live connections
    return None
