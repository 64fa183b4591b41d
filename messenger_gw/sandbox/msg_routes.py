"""``/msg/*`` (contract section 4)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from . import messages
from .envelope import Body, CodeError
from .routing import caller_of, check, require_self_or_admin, route
from .state import Caller, Sandbox

# getSendMsgReq: the contentTypes send_msg accepts over REST, and each one's required fields.
REQUIRED_CONTENT_FIELDS: dict[int, tuple[str, ...]] = {
    101: ("content",),
    102: ("sourcePicture", "bigPicture", "snapshotPicture"),
    103: ("sourceUrl", "duration"),
    104: ("videoUrl", "videoType", "videoSize", "duration", "snapshotUrl", "snapshotWidth", "snapshotHeight"),
    105: ("sourceUrl", "fileName", "fileSize"),
    106: ("atUserList",),
    110: ("data",),
    1400: ("notificationName", "notificationType", "text"),
}
CONTENT_ELEM = {101: "TextElem", 102: "PictureElem", 103: "SoundElem", 104: "VideoElem", 105: "FileElem",
                106: "AtElem", 110: "CustomElem", 1400: "OANotificationElem"}  # fmt: skip
REVOKE_NOTIFICATION = 2101


@route("/msg/get_server_time")
def get_server_time(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    return {"serverTime": sb.now_ms()}


@route("/msg/send_msg")
async def send_msg(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    if not caller_of(caller).is_admin:
        raise CodeError(1002, "", msg="only app manager can send message")  # checked in the API process
    send_id, content_type, session_type = (
        body.string("sendID"),
        body.integer("contentType"),
        body.integer("sessionType"),
    )
    content = body.get("content")
    check(bool(send_id) and content_type != 0 and session_type != 0 and isinstance(content, dict))
    assert isinstance(content, dict)
    if content_type not in REQUIRED_CONTENT_FIELDS:
        raise CodeError(1001, "", msg="unsupported content type")
    for name in REQUIRED_CONTENT_FIELDS[content_type]:
        if not content.get(name):
            elem = CONTENT_ELEM[content_type]
            raise CodeError(
                500,
                "",
                msg=f"Key: '{elem}.{name[0].upper()}{name[1:]}' Error:Field validation for "
                f"'{name[0].upper()}{name[1:]}' failed on the 'required' tag",
            )
    if (session_type == 4) != (content_type == 1400):
        raise CodeError(1001, "sessionType and contentType do not match")
    sender = sb.users.get(send_id)
    if sender is None:
        raise CodeError(1004, "sendID not found")
    recv_id, group_id = body.string("recvID"), body.string("groupID")
    if session_type in (1, 4):
        check(bool(recv_id))
    elif session_type in (2, 3):
        check(bool(group_id))
    options: dict[str, bool] = {}
    if body.boolean("isOnlineOnly"):
        options |= dict.fromkeys(("history", "persistent", "senderSync", "conversationUpdate"), False)
    if body.boolean("notOfflinePush"):
        options["offlinePush"] = False
    push_info = body.object("offlinePushInfo")
    msg: dict[str, Any] = {
        "sendID": send_id,
        "recvID": recv_id,
        "groupID": group_id,
        "clientMsgID": messages.md5_id(),
        "serverMsgID": "",
        "senderPlatformID": body.integer("senderPlatformID"),
        "senderNickname": body.string("senderNickname") or sender["nickname"],
        "senderFaceURL": body.string("senderFaceURL"),
        "sessionType": session_type,
        "msgFrom": 200,
        "contentType": content_type,
        # The stored content is the JSON string of `content`; MsgData.content is proto bytes (base64 in JSON).
        "content": base64.b64encode(orjson.dumps(content)).decode(),
        "seq": 0,
        "sendTime": body.integer("sendTime"),
        "createTime": sb.now_ms(),
        "status": 0,
        "isRead": False,
        "options": options,
        "offlinePushInfo": None if push_info is None else _push_info(push_info),
        "atUserIDList": None,
        "attachedInfo": "",
        "ex": body.string("ex"),
    }
    sent = await messages.send(sb, msg)
    sent.push()
    return sent.reply


def _push_info(info: Body) -> dict[str, Any]:
    return {k: info.boolean(k) if k == "iOSBadgeCount" else info.string(k) for k in messages.PUSH_INFO_FIELDS}


@route("/msg/pull_msg_by_seq")
def pull_msg_by_seq(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # The RPC behind WS 1002; no ownership check in v3.8.3 (contract, section 10).
    ranges = [
        (r.string("conversationID"), r.integer("begin"), r.integer("end"), r.integer("num"))
        for r in body.objects("seqRanges") or []
    ]
    msgs, notifications = messages.pull_by_ranges(sb, body.string("userID"), ranges, body.integer("order") == 1)
    return {"msgs": msgs or None, "notificationMsgs": notifications or None}


@route("/msg/get_conversations_has_read_and_max_seq")
def get_conversations_has_read_and_max_seq(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # The RPC behind WS 1006; no ownership check in v3.8.3.
    seqs = messages.has_read_and_max_seq(sb, body.string("userID"), body.strings("conversationIDs") or [])
    return {"seqs": seqs or None}


@route("/msg/mark_conversation_as_read")
def mark_conversation_as_read(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # MarkConversationAsRead: no ownership check in v3.8.3 (route surface, /msg); the reader
    # needs a conversation record, and hasReadSeq only moves forward.
    user_id, conversation_id = body.string("userID"), body.string("conversationID")
    check(bool(user_id) and bool(conversation_id))
    if (user_id, conversation_id) not in sb.conversations:
        raise CodeError(1004, "record not found")
    wanted = body.integer("hasReadSeq")
    if wanted > sb.has_read.get((user_id, conversation_id), 0):
        sb.has_read[(user_id, conversation_id)] = wanted
    return None


def _find(sb: Sandbox, conversation_id: str, seq: int) -> dict[str, Any]:
    stored = sb.messages.get(conversation_id, [])
    if not 1 <= seq <= len(stored) or stored[seq - 1].get("deleted"):
        raise CodeError(1004, "msg not found")
    return stored[seq - 1]


@route("/msg/revoke_msg")
def revoke_msg(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    conversation_id, seq, user_id = body.string("conversationID"), body.integer("seq"), body.string("userID")
    check(seq >= 1 and bool(conversation_id) and bool(user_id))
    who = require_self_or_admin(caller, user_id)
    msg = _find(sb, conversation_id, seq)
    if msg["contentType"] == REVOKE_NOTIFICATION:
        raise CodeError(1404, "msg already revoked")
    if not who.is_admin:
        if msg["sessionType"] in (1, 4):
            if msg["sendID"] != user_id:
                raise CodeError(1002, "only the sender may revoke")
        else:
            members = sb.members.get(msg["groupID"], {})
            role = members.get(user_id, {}).get("roleLevel", 0)
            sender_role = members.get(msg["sendID"], {}).get("roleLevel", 20)
            if not (role == 100 or (role == 60 and sender_role == 20) or msg["sendID"] == user_id):
                raise CodeError(1002, "no permission to revoke")
    revoked = {"revokerID": user_id, "revokeTime": sb.now_ms(), "clientMsgID": msg["clientMsgID"], "seq": seq}
    msg["contentType"] = REVOKE_NOTIFICATION
    msg["content"] = base64.b64encode(orjson.dumps(revoked)).decode()
    sb.after("callbackBeforeAfterMsgCommand", {"conversationID": conversation_id, "seq": seq, "userID": user_id})
    return None


@route("/msg/delete_msgs")
def delete_msgs(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    conversation_id, user_id, seqs = body.string("conversationID"), body.string("userID"), body.get("seqs")
    check(bool(conversation_id) and isinstance(seqs, list) and all(isinstance(s, int) for s in seqs))
    assert isinstance(seqs, list)
    require_self_or_admin(caller, user_id)
    options = body.object("deleteSyncOpt")
    everyone = options is not None and options.boolean("IsSyncOther")
    for seq in seqs:
        msg = _find(sb, conversation_id, seq)
        if everyone:
            msg["deleted"] = True
            msg["content"] = ""
        else:
            sb.hidden.add((user_id, conversation_id, seq))
    return None


@route("/msg/search_msg")
def search_msg(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No admin check in v3.8.3 (contract, section 4).
    send_id, recv_id = body.string("sendID"), body.string("recvID")
    content_type, session_type, send_date = (
        body.integer("contentType"),
        body.integer("sessionType"),
        body.string("sendTime"),
    )
    if send_date and not _is_date(send_date):
        raise CodeError(1001, "sendTime must be YYYY-MM-DD")
    pagination = body.object("pagination")
    page = max(1, pagination.integer("pageNumber")) if pagination else 1
    size = pagination.integer("showNumber") or 20 if pagination else 20
    found = []
    for stored in sb.messages.values():
        for msg in stored:
            if msg.get("deleted") or (send_id and msg["sendID"] != send_id):
                continue
            if recv_id and msg["recvID"] != recv_id and msg["groupID"] != recv_id:
                continue
            if (content_type and msg["contentType"] != content_type) or (
                session_type and msg["sessionType"] != session_type
            ):
                continue
            if send_date and _date_of(msg["sendTime"]) != send_date:
                continue
            found.append(msg)
    page_items = found[(page - 1) * size : page * size]
    logs = [
        {"chatLog": _chat_log(sb, msg), "isRevoked": msg["contentType"] == REVOKE_NOTIFICATION} for msg in page_items
    ]
    return {"chatLogs": logs or None, "chatLogsNum": len(found)}


def _is_date(text: str) -> bool:
    import datetime

    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _date_of(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).date().isoformat()


def _chat_log(sb: Sandbox, msg: dict[str, Any]) -> dict[str, Any]:
    group = sb.groups.get(msg["groupID"], {})
    recv = sb.users.get(msg["recvID"], {})
    return {
        "serverMsgID": msg["serverMsgID"],
        "clientMsgID": msg["clientMsgID"],
        "sendID": msg["sendID"],
        "recvID": msg["recvID"],
        "groupID": msg["groupID"],
        "recvNickname": recv.get("nickname", ""),
        "senderPlatformID": msg["senderPlatformID"],
        "senderNickname": msg["senderNickname"],
        "senderFaceURL": msg["senderFaceURL"],
        "groupName": group.get("groupName", ""),
        "sessionType": msg["sessionType"],
        "msgFrom": msg["msgFrom"],
        "contentType": msg["contentType"],
        "content": base64.b64decode(msg["content"]).decode() if msg["content"] else "",  # a string here
        "status": msg["status"],
        "sendTime": msg["sendTime"],
        "createTime": msg["createTime"],
        "ex": msg["ex"],
        "groupFaceURL": group.get("faceURL", ""),
        "groupMemberCount": group.get("memberCount", 0),
        "seq": msg["seq"],
        "groupOwner": group.get("ownerUserID", ""),
        "groupType": group.get("groupType", 0),
    }
