"""``/msg/*`` (contract section 4)."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import orjson

from .envelope import Body, CodeError
from .routing import caller_of, check, require_self_or_admin, route
from .state import OPERATION_ID, Caller, Sandbox

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


def _md5_id() -> str:
    return hashlib.md5(os.urandom(16), usedforsecurity=False).hexdigest()


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
    if session_type in (1, 4):
        recv_id = body.string("recvID")
        check(bool(recv_id))
        if recv_id not in sb.users:
            raise CodeError(1004, "userID not found")
        conversation_id = sb.single_conversation_id(send_id, recv_id, "si" if session_type == 1 else "sn")
        owners, peer_of, group_id = [send_id, recv_id], {send_id: recv_id, recv_id: send_id}, ""
    elif session_type == 3:
        group_id = body.string("groupID")
        check(bool(group_id))
        group = sb.groups.get(group_id)
        if group is None:
            raise CodeError(1004, "group not found")
        if group["status"] == 2:
            raise CodeError(1204, "group dismissed")
        members = sb.members[group_id]
        member = members.get(send_id)
        if not sb.is_admin(send_id) and member is None:
            raise CodeError(1203, "sender not in group")
        if member is not None and member["roleLevel"] != 100:
            if member["muteEndTime"] > sb.now_ms():
                raise CodeError(1402, "sender muted")
            if group["status"] == 3 and member["roleLevel"] != 60:
                raise CodeError(1403, "group muted")
        conversation_id = f"sg_{group_id}"
        owners, peer_of = list(members), {}
        recv_id = ""
    else:
        raise CodeError(1001, "unknown sessionType")
    now = sb.now_ms()
    send_time = body.integer("sendTime") or now
    msg: dict[str, Any] = {
        "sendID": send_id,
        "recvID": recv_id,
        "groupID": group_id,
        "clientMsgID": _md5_id(),
        "serverMsgID": _md5_id(),
        "senderPlatformID": body.integer("senderPlatformID"),
        "senderNickname": body.string("senderNickname") or sender["nickname"],
        "senderFaceURL": body.string("senderFaceURL"),
        "sessionType": session_type,
        "msgFrom": 200,
        "contentType": content_type,
        # The stored content is the JSON string of `content`; MsgData.content is proto bytes (base64 in JSON).
        "content": base64.b64encode(orjson.dumps(content)).decode(),
        "seq": sb.max_seq(conversation_id) + 1,
        "sendTime": send_time,
        "createTime": now,
        "status": 2,
        "isRead": False,
        "options": {},
        "offlinePushInfo": None,
        "atUserIDList": None,
        "attachedInfo": "",
        "ex": body.string("ex"),
    }
    single = session_type in (1, 4)
    callback = _message_callback(msg, content)
    if not sb.is_admin(send_id) and not 1000 <= content_type <= 5000:
        # Skipped for admin senders and notifications (contract 8.5).
        await sb.before(
            "callbackBeforeSendSingleMsgCommand" if single else "callbackBeforeSendGroupMsgCommand", callback
        )
    sb.messages.setdefault(conversation_id, []).append(msg)
    sb.after("callbackAfterSendSingleMsgCommand" if single else "callbackAfterSendGroupMsgCommand", callback)
    for owner in owners:
        sb.touch_conversation(
            owner, conversation_id, session_type=session_type, peer=peer_of.get(owner, ""), group=group_id
        )
    return {"serverMsgID": msg["serverMsgID"], "clientMsgID": msg["clientMsgID"], "sendTime": send_time}


def _message_callback(msg: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """CommonCallbackReq + recvID or groupID, in OpenIM's field order; content is a JSON string."""
    body = {
        "sendID": msg["sendID"],
        "serverMsgID": msg["serverMsgID"],
        "clientMsgID": msg["clientMsgID"],
        "operationID": OPERATION_ID.get(),
        "senderPlatformID": msg["senderPlatformID"],
        "senderNickname": msg["senderNickname"],
        "sessionType": msg["sessionType"],
        "msgFrom": msg["msgFrom"],
        "contentType": msg["contentType"],
        "status": msg["status"],
        "sendTime": msg["sendTime"],
        "createTime": msg["createTime"],
        "content": orjson.dumps(content).decode(),
        "seq": 0,
        "atUserList": None,
        "faceURL": msg["senderFaceURL"],
        "ex": msg["ex"],
    }
    return body | ({"recvID": msg["recvID"]} if msg["sessionType"] in (1, 4) else {"groupID": msg["groupID"]})


@route("/msg/pull_msg_by_seq")
def pull_msg_by_seq(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No ownership check in v3.8.3 (contract, section 10): any token reads any conversation.
    user_id = body.string("userID")
    ranges = body.objects("seqRanges") or []
    descending = body.integer("order") == 1
    msgs: dict[str, Any] = {}
    notifications: dict[str, Any] = {}
    for seq_range in ranges:
        conversation_id = seq_range.string("conversationID")
        stored = sb.messages.get(conversation_id, [])
        begin, end, num = seq_range.integer("begin"), seq_range.integer("end"), seq_range.integer("num")
        picked = [
            m for m in stored
            if begin <= m["seq"] <= end and (user_id, conversation_id, m["seq"]) not in sb.hidden
        ]  # fmt: skip
        picked = sorted(picked, key=lambda m: m["seq"], reverse=descending)[: num or None]
        if not picked:
            continue  # conversations without messages are left out
        entry = {"Msgs": picked, "isEnd": end >= len(stored), "endSeq": 0}
        (notifications if conversation_id.startswith("n_") else msgs)[conversation_id] = entry
    return {"msgs": msgs, "notificationMsgs": notifications}


@route("/msg/get_conversations_has_read_and_max_seq")
def get_conversations_has_read_and_max_seq(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    wanted = body.strings("conversationIDs") or [cid for owner, cid in sb.conversations if owner == user_id]
    seqs = {}
    for conversation_id in wanted:
        stored = sb.messages.get(conversation_id, [])
        seqs[conversation_id] = {
            "maxSeq": len(stored),
            "hasReadSeq": sb.has_read.get((user_id, conversation_id), 0),
            "maxSeqTime": stored[-1]["sendTime"] if stored else 0,
        }
    return {"seqs": seqs}


@route("/msg/mark_conversation_as_read")
def mark_conversation_as_read(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id, conversation_id = body.string("userID"), body.string("conversationID")
    check(bool(user_id) and bool(conversation_id))
    require_self_or_admin(caller, user_id)
    seq = body.integer("hasReadSeq") or sb.max_seq(conversation_id)
    sb.has_read[(user_id, conversation_id)] = min(seq, sb.max_seq(conversation_id))
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
