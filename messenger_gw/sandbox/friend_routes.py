"""``/friend/*``: the routes the SDK calls at every login and before a first message.

Friendships live in ``Sandbox.friends`` (owner -> friend -> a ``FriendInfoOnly``-shaped record)
and blacklists in ``Sandbox.blacks``; every change to an owner's friends is recorded in
``Sandbox.version_log("friend", owner)``, which the incremental sync answers from.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .envelope import Body
from .routing import check, require_self_or_admin, route
from .state import Caller, Sandbox


def friend_info(sb: Sandbox, record: dict[str, Any]) -> dict[str, Any]:
    """``sdkws.FriendInfo``: the stored record with the friend's UserInfo in place of its ID."""
    info = {k: v for k, v in record.items() if k != "friendUserID"}
    return info | {"friendUser": dict(sb.users.get(record["friendUserID"], {"userID": record["friendUserID"]}))}


def id_hash(ids: list[str]) -> int:
    """A hash of an ID list, so a caller that already holds the same list is told ``equal``."""
    return int.from_bytes(hashlib.md5("".join(sorted(ids)).encode(), usedforsecurity=False).digest()[:8], "big") >> 1


def incremental(sb: Sandbox, kind: str, owner: str, body: Body, record: Any) -> dict[str, Any]:
    """``incrversion.Option.Build``: ``full`` with no lists unless the caller's versionID is the
    log's; then what changed since its version. ``record(id)`` gives an item's current value."""
    log = sb.version_log(kind, owner)
    full, changed = log.since(body.integer("version"), body.string("versionID"))
    lists = {op: [item for item in map(record, ids) if item is not None] or None for op, ids in changed.items()}
    return {
        "version": log.version,
        "versionID": log.version_id,
        "full": full,
        "delete": changed["delete"] or None,
        "insert": lists["insert"],
        "update": lists["update"],
        "sortVersion": 0,
    }


def full_ids(sb: Sandbox, kind: str, owner: str, ids: list[str], body: Body) -> dict[str, Any]:
    log = sb.version_log(kind, owner)
    equal = bool(ids) and body.integer("idHash") == id_hash(ids)
    return {
        "version": log.version,
        "versionID": log.version_id if log.version else "",
        "equal": equal,
        "userIDs" if kind == "friend" else "groupIDs": None if equal else ids or None,
    }


@route("/friend/get_incremental_friends")
def get_incremental_friends(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    require_self_or_admin(caller, user_id)
    friends = sb.friends.get(user_id, {})
    return incremental(sb, "friend", user_id, body, lambda f: friend_info(sb, friends[f]) if f in friends else None)


@route("/friend/get_full_friend_user_ids")
def get_full_friend_user_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3: any user's friend list
    return full_ids(sb, "friend", user_id, list(sb.friends.get(user_id, {})), body)


@route("/friend/get_designated_friends")
def get_designated_friends(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, wanted = body.string("ownerUserID"), body.strings("friendUserIDs")  # no check in v3.8.3
    check(bool(owner) and bool(wanted))
    friends = sb.friends.get(owner, {})
    found = [friend_info(sb, friends[f]) for f in wanted or [] if f in friends]
    return {"friendsInfo": found or None}
