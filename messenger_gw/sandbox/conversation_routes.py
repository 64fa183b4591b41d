"""``/conversation/*`` (contract section 6). No ownership checks in v3.8.3."""

from __future__ import annotations

from typing import Any

from .envelope import Body, CodeError
from .friend_routes import incremental
from .routing import check, route
from .state import Caller, Sandbox

WRAPPED_FIELDS = (
    "recvMsgOpt", "isPinned", "attachedInfo", "isPrivateChat", "ex", "burnDuration",
    "minSeq", "maxSeq", "groupAtType", "msgDestructTime", "isMsgDestruct",
)  # fmt: skip


def _owned(sb: Sandbox, owner: str) -> list[dict[str, Any]]:
    return [c for (o, _), c in sb.conversations.items() if o == owner]


@route("/conversation/get_sorted_conversation_list")
def get_sorted_conversation_list(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")
    wanted = set(body.strings("conversationIDs") or [])
    owned = [c for c in _owned(sb, user_id) if not wanted or c["conversationID"] in wanted]
    if not owned:
        raise CodeError(1004, "record not found")  # a user without conversations gets 1004
    pagination = body.object("pagination")
    number = pagination.integer("pageNumber") if pagination else 1
    size = (pagination.integer("showNumber") if pagination else 0) or 20
    elems = []
    unread_total = 0
    for conversation in owned:
        cid = conversation["conversationID"]
        stored = sb.messages.get(cid, [])
        unread = max(0, len(stored) - sb.has_read.get((user_id, cid), 0))
        unread_total += unread
        latest = stored[-1] if stored else None
        group = sb.groups.get(conversation["groupID"], {})
        elems.append(
            {
                "conversationID": cid,
                "recvMsgOpt": conversation["recvMsgOpt"],
                "unreadCount": unread,
                "IsPinned": conversation["isPinned"],
                "msgInfo": None
                if latest is None
                else {
                    "serverMsgID": latest["serverMsgID"],
                    "clientMsgID": latest["clientMsgID"],
                    "sessionType": latest["sessionType"],
                    "sendID": latest["sendID"],
                    "recvID": latest["recvID"],
                    "senderName": latest["senderNickname"],
                    "faceURL": latest["senderFaceURL"],
                    "groupID": latest["groupID"],
                    "groupName": group.get("groupName", ""),
                    "groupFaceURL": group.get("faceURL", ""),
                    "groupType": group.get("groupType", 0),
                    "groupMemberCount": group.get("memberCount", 0),
                    "LatestMsgRecvTime": latest["sendTime"],
                    "msgFrom": latest["msgFrom"],
                    "contentType": latest["contentType"],
                    "content": latest["content"],
                    "ex": latest["ex"],
                },
            }
        )
    elems.sort(key=lambda e: (e["IsPinned"], e["msgInfo"]["LatestMsgRecvTime"] if e["msgInfo"] else 0), reverse=True)
    return {
        "conversationTotal": len(elems),
        "unreadTotal": unread_total,
        "conversationElems": elems[(number - 1) * size : number * size],
    }


@route("/conversation/get_conversations")
def get_conversations(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    owner, ids = body.string("ownerUserID"), body.strings("conversationIDs")
    check(ids is not None)
    assert ids is not None
    found = [dict(sb.conversations[(owner, cid)]) for cid in ids if (owner, cid) in sb.conversations]
    return {"conversations": found or None}


@route("/conversation/set_conversations")
def set_conversations(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_ids, conversation = body.strings("userIDs") or [], body.object("conversation")
    check(conversation is not None and bool(conversation.string("conversationID")))
    assert conversation is not None
    cid = conversation.string("conversationID")
    for user_id in user_ids:
        sb.touch_conversation(
            user_id,
            cid,
            session_type=conversation.integer("conversationType"),
            peer=conversation.string("userID"),
            group=conversation.string("groupID"),
        )
        record = sb.conversations[(user_id, cid)]
        for name in WRAPPED_FIELDS:
            value = conversation.get(name)
            if value is not None:  # wrappers: absent or null leaves the value unchanged
                record[name] = value
        sb.version_log("conversation", user_id).change(cid, "update")
    return None


@route("/conversation/get_incremental_conversations")
def get_incremental_conversations(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3
    return incremental(sb, "conversation", user_id, body, lambda c: sb.conversations.get((user_id, c)))


@route("/conversation/get_not_notify_conversation_ids")
def get_not_notify_conversation_ids(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # FindUserIDAllNotNotifyConversationID: recvMsgOpt 2 (receive, do not notify).
    user_id = body.string("userID")
    return {"conversationIDs": [c["conversationID"] for c in _owned(sb, user_id) if c["recvMsgOpt"] == 2] or None}
