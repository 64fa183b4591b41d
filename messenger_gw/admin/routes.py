"""``/admin/*``: the audited admin and moderation API (documented in ``docs/admin-api.md``).

A sub-application with two middlewares of its own: ``audit`` (outermost: every
call is recorded, refused ones too) and ``authenticate_admin``. OpenIM runs
every operation with the admin token; its refusals are mapped to statuses
(``STATUS_BY_OPENIM_CODE``) and keep OpenIM's errCode in the envelope.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from messenger_gw import errors
from messenger_gw.auth import valid_user_id
from messenger_gw.edge import error_response, read_json_object
from messenger_gw.moderation import BANS
from messenger_gw.openim import ADMIN_TOKENS, IM_TOKENS, OPENIM, USER_PLATFORM_IDS, OpenIMAPIError
from messenger_gw.operation_id import OPERATION_ID
from messenger_gw.settings import SETTINGS

from .actions import MODERATION
from .audit import AUDIT_LOG, AuditEntry
from .auth import ADMIN_AUTHENTICATOR

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AUDIT: web.RequestKey[AuditEntry] = web.RequestKey("audit", AuditEntry)
# On an answer whose audit entry the store did not take at once: it waits for a retry (docs/admin-api.md).
AUDIT_HEADER = "X-Audit-Entry"

STATUS_BY_OPENIM_CODE = {1001: 400, 1002: 403, 1004: 404, 1101: 404, 1201: 404, 1204: 409, 1404: 409}
MAX_PAGE_SIZE = 100
MAX_REASON = 500


class OpenIMRefused(errors.GatewayError):
    """OpenIM refused an admin operation; the status follows its errCode, the envelope keeps it."""

    def __init__(self, error: OpenIMAPIError) -> None:
        super().__init__(error.msg or "OpenIM refused the operation", detail="OpenIM refused the operation")
        self.status = STATUS_BY_OPENIM_CODE.get(error.errcode, 502)
        self.code = error.errcode


def create_admin_app() -> web.Application:
    app = web.Application(middlewares=[audit, authenticate_admin])
    add = app.router.add_route
    add("GET", "/groups", list_groups, name="groups.list")
    add("GET", "/groups/{groupID}", group_info, name="groups.info")
    add("GET", "/groups/{groupID}/members", group_members, name="groups.members")
    add("POST", "/groups/{groupID}/dismiss", dismiss_group, name="groups.dismiss")
    add("POST", "/groups/{groupID}/kick", kick_members, name="groups.kick")
    add("POST", "/groups/{groupID}/mute", mute_group, name="groups.mute")
    add("POST", "/groups/{groupID}/unmute", unmute_group, name="groups.unmute")
    add("POST", "/groups/{groupID}/members/{userID}/mute", mute_member, name="groups.members.mute")
    add("POST", "/groups/{groupID}/members/{userID}/unmute", unmute_member, name="groups.members.unmute")
    add("GET", "/messages", search_messages, name="messages.search")
    add("POST", "/messages/revoke", revoke_message, name="messages.revoke")
    add("POST", "/messages/delete", delete_messages, name="messages.delete")
    add("GET", "/users/{userID}", user_info, name="users.info")
    add("POST", "/users/{userID}/force-logout", force_logout, name="users.force_logout")
    add("POST", "/users/{userID}/ban", ban_user, name="users.ban")
    add("DELETE", "/users/{userID}/ban", unban_user, name="users.unban")
    add("GET", "/bans", list_bans, name="bans.list")
    add("GET", "/audit", read_audit, name="audit.read")
    return app


# -- middlewares -----------------------------------------------------------------------------


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    route = match_info.route
    entry = AuditEntry(
        operation=route.name if route.name else "unknown",
        target=match_info.get("userID") or match_info.get("groupID") or "",
        operation_id=request[OPERATION_ID],
    )
    request[AUDIT] = entry
    audit_log = request.config_dict[AUDIT_LOG]
    try:
        response = await handler(request)
        if response.status >= 300:
            entry.outcome = f"http {response.status}"
    except Exception as exc:
        entry.outcome = _outcome(exc)
        # Answered here rather than by the edge, so that the answer can say its audit entry is late.
        response = error_response(request, exc)
    except BaseException:
        entry.outcome = "cancelled"  # the client went away mid-call: on record as such, not as "ok"
        await audit_log.append(entry)
        raise
    if entry.operation == "audit.read" and entry.outcome == "ok":
        return response  # reading the log is not itself news
    if not await audit_log.append(entry):
        response.headers[AUDIT_HEADER] = "queued"
    return response


def _outcome(exc: Exception) -> str:
    if isinstance(exc, errors.GatewayError):
        return f"{exc.status} errCode {exc.code}"
    if isinstance(exc, web.HTTPException):
        return f"http {exc.status}"
    return f"failed: {type(exc).__name__}"


@web.middleware
async def authenticate_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    admin = request.config_dict[ADMIN_AUTHENTICATOR].authenticate(request)
    request[AUDIT].actor = admin.actor
    return await handler(request)


# -- helpers ---------------------------------------------------------------------------------------


async def _openim(request: web.Request, path: str, body: dict[str, Any]) -> Any:
    config = request.config_dict
    openim, operation_id = config[OPENIM], request[OPERATION_ID]
    try:
        return await config[ADMIN_TOKENS].call(
            lambda admin: openim.call(path, body, operation_id=operation_id, token=admin)
        )
    except OpenIMAPIError as exc:
        raise OpenIMRefused(exc) from None


async def _body(request: web.Request, *, reason_required: bool = True) -> dict[str, Any]:
    body = await read_json_object(request, empty_as_object=True)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON or (reason_required and not reason.strip()):
        raise errors.InvalidField(f"reason must be a non-empty string of at most {MAX_REASON} characters")
    request[AUDIT].reason = reason
    return body


def _page(request: web.Request) -> dict[str, int]:
    return {
        "pageNumber": _int_query(request, "page", 1, 1, 1_000_000),
        "showNumber": _int_query(request, "size", 20, 1, MAX_PAGE_SIZE),
    }


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise errors.InvalidField(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["userID"]
    if not valid_user_id(user_id):
        raise errors.InvalidField("userID must be 1 to 64 letters, digits or '_'")
    return user_id


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _list(data: Any, name: str) -> list[Any]:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _count(data: Any, name: str) -> int:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, int) else 0


def _whole_number(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """``body[name]`` when it is a whole number from ``low`` to ``high``; None when absent."""
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
        raise errors.InvalidField(f"{name} must be a whole number from {low} to {high}")
    return value


# -- groups --------------------------------------------------------------------------------------------


async def list_groups(request: web.Request) -> web.Response:
    body = {
        "pagination": _page(request),
        "groupName": request.query.get("name", ""),
        "groupID": request.query.get("groupID", ""),
    }
    data = await _openim(request, "/group/get_groups", body)
    return _json({"total": _count(data, "total"), "groups": _list(data, "groups")})


async def group_info(request: web.Request) -> web.Response:
    group_id = request.match_info["groupID"]
    infos = _list(await _openim(request, "/group/get_groups_info", {"groupIDs": [group_id]}), "groupInfos")
    if not infos:
        raise errors.NotFound(f"No group {group_id}")
    return _json({"group": infos[0]})


async def group_members(request: web.Request) -> web.Response:
    body = {"groupID": request.match_info["groupID"], "pagination": _page(request), "filter": 0, "keyword": ""}
    data = await _openim(request, "/group/get_group_member_list", body)
    return _json({"total": _count(data, "total"), "members": _list(data, "members")})


async def dismiss_group(request: web.Request) -> web.Response:
    body = await _body(request)
    delete_members = body.get("deleteMember", False)
    if not isinstance(delete_members, bool):
        raise errors.InvalidField("deleteMember must be true or false")
    group_id = request.match_info["groupID"]
    await _openim(request, "/group/dismiss_group", {"groupID": group_id, "deleteMember": delete_members})
    return _json({"groupID": group_id, "dismissed": True})


async def kick_members(request: web.Request) -> web.Response:
    body = await _body(request)
    user_ids = body.get("userIDs")
    if not isinstance(user_ids, list) or not user_ids or not all(valid_user_id(u) for u in user_ids):
        raise errors.InvalidField("userIDs must be a non-empty list of userIDs")
    group_id = request.match_info["groupID"]
    request[AUDIT].target = f"{group_id}:{','.join(user_ids)}"
    await _openim(
        request, "/group/kick_group", {"groupID": group_id, "kickedUserIDs": user_ids, "reason": body["reason"]}
    )
    return _json({"groupID": group_id, "kicked": user_ids})


async def mute_group(request: web.Request) -> web.Response:
    await _body(request)
    group_id = request.match_info["groupID"]
    await _openim(request, "/group/mute_group", {"groupID": group_id})
    return _json({"groupID": group_id, "muted": True})


async def unmute_group(request: web.Request) -> web.Response:
    await _body(request)
    group_id = request.match_info["groupID"]
    await _openim(request, "/group/cancel_mute_group", {"groupID": group_id})
    return _json({"groupID": group_id, "muted": False})


async def mute_member(request: web.Request) -> web.Response:
    body = await _body(request)
    seconds = _whole_number(body, "seconds", 1, 366 * 86400)
    if seconds is None:
        raise errors.InvalidField("seconds must be a whole number from 1 to 31622400")
    group_id, user_id = request.match_info["groupID"], _user_id(request)
    request[AUDIT].target = f"{group_id}:{user_id}"
    await _openim(
        request, "/group/mute_group_member", {"groupID": group_id, "userID": user_id, "mutedSeconds": seconds}
    )
    return _json({"groupID": group_id, "userID": user_id, "mutedSeconds": seconds})


async def unmute_member(request: web.Request) -> web.Response:
    await _body(request)
    group_id, user_id = request.match_info["groupID"], _user_id(request)
    request[AUDIT].target = f"{group_id}:{user_id}"
    await _openim(request, "/group/cancel_mute_group_member", {"groupID": group_id, "userID": user_id})
    return _json({"groupID": group_id, "userID": user_id, "mutedSeconds": 0})


# -- messages ----------------------------------------------------------------------------------------------


async def search_messages(request: web.Request) -> web.Response:
    query = request.query
    body = {
        "sendID": query.get("sendID", ""),
        "recvID": query.get("recvID", ""),
        "contentType": _int_query(request, "contentType", 0, 0, 10_000),
        "sessionType": _int_query(request, "sessionType", 0, 0, 4),
        "sendTime": query.get("date", ""),
        "pagination": _page(request),
    }
    data = await _openim(request, "/msg/search_msg", body)
    return _json({"total": _count(data, "chatLogsNum"), "messages": _list(data, "chatLogs")})


def _conversation_and_seqs(body: dict[str, Any], *, many: bool) -> tuple[str, list[int]]:
    conversation_id = body.get("conversationID")
    seqs = body.get("seqs") if many else [body.get("seq")]
    if not isinstance(conversation_id, str) or not conversation_id:
        raise errors.InvalidField("conversationID is required")
    if not isinstance(seqs, list) or not seqs or not all(isinstance(s, int) and s >= 1 for s in seqs):
        raise errors.InvalidField(
            "seqs must be a non-empty list of message seqs (1 or more)" if many else "seq must be 1 or more"
        )
    return conversation_id, seqs


async def revoke_message(request: web.Request) -> web.Response:
    body = await _body(request)
    conversation_id, [seq] = _conversation_and_seqs(body, many=False)
    request[AUDIT].target = f"{conversation_id}:{seq}"
    admin_user = request.config_dict[SETTINGS].openim_admin_user_id
    await _openim(request, "/msg/revoke_msg", {"conversationID": conversation_id, "seq": seq, "userID": admin_user})
    return _json({"conversationID": conversation_id, "seq": seq, "revoked": True})


async def delete_messages(request: web.Request) -> web.Response:
    body = await _body(request)
    conversation_id, seqs = _conversation_and_seqs(body, many=True)
    request[AUDIT].target = f"{conversation_id}:{','.join(map(str, seqs))}"
    admin_user = request.config_dict[SETTINGS].openim_admin_user_id
    await _openim(
        request,
        "/msg/delete_msgs",
        {
            "conversationID": conversation_id,
            "seqs": seqs,
            "userID": admin_user,
            "deleteSyncOpt": {"IsSyncSelf": True, "IsSyncOther": True},  # for everyone
        },
    )
    return _json({"conversationID": conversation_id, "seqs": seqs, "deleted": True})


# -- users ------------------------------------------------------------------------------------------------


async def user_info(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    config = request.config_dict
    infos = _list(await _openim(request, "/user/get_users_info", {"userIDs": [user_id]}), "usersInfo")
    if not infos:
        raise errors.NotFound(f"No user {user_id} in OpenIM")
    ban = await config[BANS].get(user_id)
    platforms = await config[IM_TOKENS].stored_platforms(user_id)
    return _json({"user": infos[0], "ban": ban.as_json() if ban else None, "platformsWithTokens": platforms})


async def force_logout(request: web.Request) -> web.Response:
    body = await _body(request)
    platforms = body.get("platforms")
    if platforms is not None and (
        not isinstance(platforms, list) or not platforms or not all(p in USER_PLATFORM_IDS for p in platforms)
    ):
        raise errors.InvalidField("platforms, when given, must be a non-empty list of platformIDs 1-9")
    report = await request.config_dict[MODERATION].log_out_everywhere(
        _user_id(request), platforms, request[OPERATION_ID]
    )
    return _reported(request, report)


async def ban_user(request: web.Request) -> web.Response:
    body = await _body(request)
    expires_in = _whole_number(body, "expiresInSeconds", 60, 10 * 366 * 86400)
    entry = request[AUDIT]
    report = await request.config_dict[MODERATION].ban(
        _user_id(request),
        reason=entry.reason,
        actor=entry.actor,
        expires_in=expires_in,
        operation_id=request[OPERATION_ID],
    )
    return _reported(request, report)


async def unban_user(request: web.Request) -> web.Response:
    await _body(request)
    user_id = _user_id(request)
    was_banned = await request.config_dict[MODERATION].unban(user_id)
    request[AUDIT].detail = {"wasBanned": was_banned}
    return _json({"userID": user_id, "banned": False, "wasBanned": was_banned})


def _reported(request: web.Request, report: dict[str, Any]) -> web.Response:
    """200 when every step worked; 207 when OpenIM failed on some platform (retried in the background)
    or the store failed a step of the gateway's own (named in ``unfinished``)."""
    entry = request[AUDIT]
    entry.detail = {"forceLogout": report["forceLogout"], "sessionsRevoked": report["sessionsRevoked"]}
    if report["unfinished"]:
        entry.detail["unfinished"] = report["unfinished"]
    if not report["complete"]:
        entry.outcome = "partial"
    return _json(report, 200 if report["complete"] else 207)


async def list_bans(request: web.Request) -> web.Response:
    bans = await request.config_dict[BANS].all(now=time.time())
    return _json({"total": len(bans), "bans": [b.as_json() for b in bans]})


# -- audit ---------------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("actor", "operation", "target", "outcome", "operationID")


async def read_audit(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", 50, 1, 500)
    before = request.query.get("before") or None
    if before is not None and not all(part.isdigit() for part in before.split("-", 1)):
        raise errors.InvalidField("before must be an entry id from an earlier page")
    filters = {name: request.query[name] for name in AUDIT_FILTERS if request.query.get(name)}
    entries, cursor = await request.config_dict[AUDIT_LOG].read(before=before, limit=limit, filters=filters)
    return _json({"entries": entries, "next": cursor})
