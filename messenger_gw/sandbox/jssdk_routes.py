"""``/jssdk/*`` (``internal/api/jssdk``): the SDK's conversation list, in protobuf.

A body with ``Content-Type: application/x-protobuf`` (or ``application/protobuf``) is a protobuf
request, answered with the protobuf reply base64-encoded as the envelope's ``data``; an empty
reply is ``""``. A JSON body (or none) gets a JSON answer. Both routes ignore ``ownerUserID``
and use the token's user.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import DecodeError

from messenger_gw.protocol import conversation_pb2, jssdk_pb2, relation_pb2, sdkws_pb2

from . import messages
from .envelope import Body, CodeError
from .group_routes import group_info
from .routing import RawBody, caller_of, route
from .state import Caller, Sandbox

MAX_ACTIVE, DEFAULT_ACTIVE = 500, 100


def _request(body: RawBody, kind: type[Any]) -> tuple[Any, bool]:
    """The request as a protobuf message, and whether the caller speaks protobuf."""
    content_type = body.content_type
    if content_type == "" or "application/json" in content_type:
        try:
            value = orjson.loads(body.data) if body.data.strip() else {}
        except orjson.JSONDecodeError:
            raise CodeError(1001, "", msg="EOF" if not body.data.strip() else "invalid character in JSON") from None
        fields = Body(value if isinstance(value, dict) else {})
        request = kind()
        for field in kind.DESCRIPTOR.fields:
            if field.label == field.LABEL_REPEATED:
                getattr(request, field.name).extend(fields.strings(field.name) or [])
            elif field.type == field.TYPE_STRING:
                setattr(request, field.name, fields.string(field.name))
            else:
                setattr(request, field.name, fields.integer(field.name))
        return request, False
    if "application/protobuf" in content_type or "application/x-protobuf" in content_type:
        try:
            return kind.FromString(body.data), True
        except DecodeError:
            raise CodeError(500, "", msg="proto: cannot parse invalid wire-format data") from None
    raise CodeError(1001, "", msg="ArgsError")  # "unsupported content type", in the API process


def _answer(items: list[dict[str, Any]], unread: int, kind: type[Any], protobuf: bool) -> Any:
    if not protobuf:
        return {"unreadCount": unread, "conversations": items or None}
    reply = kind(unreadCount=unread)
    for item in items:
        entry = reply.conversations.add(maxSeq=item["maxSeq"], readSeq=item["readSeq"])
        entry.conversation.CopyFrom(conversation_pb2.Conversation(**item["conversation"]))
        if item["lastMsg"] is not None:
            entry.lastMsg.CopyFrom(messages.to_pb(item["lastMsg"]))
        if item["user"] is not None:
            entry.user.CopyFrom(sdkws_pb2.UserInfo(**item["user"]))
        if item["friend"] is not None:
            entry.friend.CopyFrom(relation_pb2.FriendInfoOnly(**item["friend"]))
        if item["group"] is not None:
            entry.group.CopyFrom(sdkws_pb2.GroupInfo(**item["group"]))
    return reply.SerializeToString()


def _conversation_msg(sb: Sandbox, owner: str, record: dict[str, Any]) -> dict[str, Any]:
    """``ConversationMsg``: the record, its last message, the peer (and friendship) or the group."""
    cid = record["conversationID"]
    max_seq = sb.max_seq(cid)
    group_id, peer = record["groupID"], record["userID"]
    return {
        "conversation": dict(record),
        "lastMsg": messages.visible(sb, owner, cid, max_seq) if max_seq else None,
        "user": dict(sb.users[peer]) if not group_id and peer in sb.users else None,
        "friend": dict(sb.friends.get(owner, {})[peer]) if not group_id and peer in sb.friends.get(owner, {}) else None,
        "group": group_info(sb, group_id) if group_id in sb.groups else None,
        "maxSeq": max_seq,
        "readSeq": sb.has_read.get((owner, cid), 0),
    }


@route("/jssdk/get_active_conversations", raw=True)
def get_active_conversations(sb: Sandbox, caller: Caller | None, body: RawBody) -> Any:
    request, protobuf = _request(body, jssdk_pb2.GetActiveConversationsReq)
    owner = caller_of(caller).user_id
    count = request.count if 0 < request.count <= MAX_ACTIVE else DEFAULT_ACTIVE
    records = [r for (o, _), r in sb.conversations.items() if o == owner]
    active = [r for r in records if sb.max_seq(r["conversationID"])]
    items = [_conversation_msg(sb, owner, r) for r in active]
    pinned = len(items) > 1  # OpenIM reads the pinned IDs only to sort two or more
    items.sort(key=lambda i: (pinned and i["conversation"]["isPinned"], i["lastMsg"]["sendTime"]), reverse=True)
    unread = sum(max(0, i["maxSeq"] - i["readSeq"]) for i in items)
    return _answer(items[:count], unread, jssdk_pb2.GetActiveConversationsResp, protobuf)


@route("/jssdk/get_conversations", raw=True)
def get_conversations(sb: Sandbox, caller: Caller | None, body: RawBody) -> Any:
    request, protobuf = _request(body, jssdk_pb2.GetConversationsReq)
    owner = caller_of(caller).user_id
    wanted = dict.fromkeys(request.conversationIDs)
    items = [
        _conversation_msg(sb, owner, sb.conversations[(owner, c)]) for c in wanted if (owner, c) in sb.conversations
    ]
    unread = sum(max(0, i["maxSeq"] - i["readSeq"]) for i in items)
    return _answer(items, unread, jssdk_pb2.GetConversationsResp, protobuf)
