"""The sandbox's message service: one store behind the WebSocket and REST, as OpenIM's msg RPC,
msg-transfer and push services behave together.

A message takes OpenIM's path whichever way it was sent (WS 1003 or REST ``/msg/send_msg``):

1. ``encapsulateMsgData``: a fresh ``serverMsgID``, ``sendTime`` when 0, option overrides;
2. ``messageVerification``: for single chat an admin ``sendID`` or a notification content type
   returns early (no before-callback, no blacklist or friend check); ``MsgData.sendID`` itself
   is never checked against the caller (v3.8.3's hole, kept on purpose);
3. the before-callbacks (which may block), then the store: a per-conversation seq, the
   sender's ``hasReadSeq`` moved to it, the conversation records of both parties (or of every
   member) created with the conversation's first message; then the after-callback;
4. the push, after the caller has answered: to ``[recvID, sendID]`` (or every member), on
   every live connection, carrying the sender's operationID.

Stored messages are dicts in OpenIM's JSON shape (``content`` base64), the shape
``/msg/pull_msg_by_seq`` answers; :func:`to_pb` and :func:`from_pb` convert for the WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from messenger_gw.protocol import sdkws_pb2

from .envelope import CodeError
from .state import OPERATION_ID, Sandbox

SINGLE, GROUP, NOTIFICATION_CHAT = 1, 3, 4
# OpenIM pushes from another service, after Kafka and msg-transfer: the push reaches the sender
# well after its 1003 reply. The SDK relies on that (it silences the echo of its own message only
# once the reply is processed), so the sandbox holds each push back this long.
PIPELINE_DELAY = 0.02
NOTIFICATION_BEGIN, NOTIFICATION_END = 1000, 5000
TYPING, REVOKE, HAS_READ_RECEIPT = 113, 111, 2200
MEMBER_QUIT_NOTIFICATION, MEMBER_KICKED_NOTIFICATION, GROUP_DISMISSED_NOTIFICATION = 1504, 1508, 1511
MSG_STATUS_SEND_SUCCESS, MSG_STATUS_HAS_DELETED = 2, 4
OWNER, GROUP_ADMIN = 100, 60
GROUP_DISMISSED, GROUP_MUTED = 2, 3

STRING_FIELDS = ("sendID", "recvID", "groupID", "clientMsgID", "serverMsgID", "senderNickname", "senderFaceURL",
                 "attachedInfo", "ex")  # fmt: skip
INT_FIELDS = ("senderPlatformID", "sessionType", "msgFrom", "contentType", "seq", "sendTime", "createTime", "status")
PUSH_INFO_FIELDS = ("title", "desc", "ex", "iOSPushSound", "iOSBadgeCount", "signalInfo")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def md5_id() -> str:
    return hashlib.md5(os.urandom(16), usedforsecurity=False).hexdigest()


def is_notification_type(content_type: int) -> bool:
    return NOTIFICATION_BEGIN <= content_type <= NOTIFICATION_END


def option(msg: dict[str, Any], key: str) -> bool:
    """``datautil.GetSwitchFromOptions``: a missing key means true."""
    return bool(msg["options"].get(key, True))


def to_pb(msg: dict[str, Any]) -> sdkws_pb2.MsgData:
    pb = sdkws_pb2.MsgData(
        content=base64.b64decode(msg["content"]) if msg["content"] else b"",
        isRead=msg["isRead"],
        options=msg["options"],
        atUserIDList=msg["atUserIDList"] or [],
    )
    for name in (*STRING_FIELDS, *INT_FIELDS):
        setattr(pb, name, msg[name])
    if msg["offlinePushInfo"] is not None:
        pb.offlinePushInfo.CopyFrom(sdkws_pb2.OfflinePushInfo(**msg["offlinePushInfo"]))
    return pb


def from_pb(pb: sdkws_pb2.MsgData) -> dict[str, Any]:
    msg: dict[str, Any] = {name: getattr(pb, name) for name in (*STRING_FIELDS, *INT_FIELDS)}
    msg |= {
        "content": base64.b64encode(pb.content).decode(),
        "isRead": pb.isRead,
        "options": dict(pb.options),
        # Go leaves an absent message field nil and an empty repeated field nil: JSON null.
        "offlinePushInfo": {k: getattr(pb.offlinePushInfo, k) for k in PUSH_INFO_FIELDS}
        if pb.HasField("offlinePushInfo")
        else None,
        "atUserIDList": list(pb.atUserIDList) or None,
    }
    return msg


def deleted_placeholder(seq: int) -> dict[str, Any]:
    """What OpenIM answers for a seq it has no message for: ``{Seq, Status: MsgStatusHasDeleted}``."""
    return from_pb(sdkws_pb2.MsgData(seq=seq, status=MSG_STATUS_HAS_DELETED))


def chat_conversation_id(msg: dict[str, Any]) -> str:
    """``msgprocessor.GetChatConversationIDByMsg``."""
    session = msg["sessionType"]
    if session in (SINGLE, NOTIFICATION_CHAT):
        low, high = sorted((msg["sendID"], msg["recvID"]))
        return f"{'si' if session == SINGLE else 'sn'}_{low}_{high}"
    return f"sg_{msg['groupID']}"


def push_conversation_id(msg: dict[str, Any]) -> str:
    """``msgprocessor.GetConversationIDByMsg``: ``n_...`` for a notification (isNotNotification false)."""
    if option(msg, "isNotNotification"):
        return chat_conversation_id(msg)
    if msg["sessionType"] == GROUP:
        return f"n_{msg['groupID']}"
    low, high = sorted((msg["sendID"], msg["recvID"]))
    return f"n_{low}_{high}"


# A push still to go: who gets it, under which conversation, the message.
Delivery = tuple[list[str], str, sdkws_pb2.MsgData]


@dataclasses.dataclass
class Sent:
    """A stored (or online-only) message whose pushes are still to go: the caller answers first."""

    msg: dict[str, Any]
    push: Callable[[], None]

    @property
    def reply(self) -> dict[str, Any]:
        return {"serverMsgID": self.msg["serverMsgID"], "clientMsgID": self.msg["clientMsgID"],
                "sendTime": self.msg["sendTime"]}  # fmt: skip


async def send(sb: Sandbox, msg: dict[str, Any]) -> Sent:
    """OpenIM's ``SendMsg`` RPC followed by msg-transfer; raises the CodeError OpenIM gives."""
    _encapsulate(sb, msg)
    session = msg["sessionType"]
    if session == SINGLE:
        await _verify_single(sb, msg)
        if not is_notification_type(msg["contentType"]) and msg["recvID"] not in sb.users:
            # modifyMessageByUserMessageReceiveOpt reads the receiver's global receive option first.
            raise CodeError(1004, "record not found")
        after = "callbackAfterSendSingleMsgCommand"
    elif session == GROUP:
        await _verify_group(sb, msg)
        if msg["contentType"] != TYPING:  # run for admins and notifications too
            await sb.before("callbackBeforeSendGroupMsgCommand", callback_body(msg))
        after = "callbackAfterSendGroupMsgCommand"
    elif session == NOTIFICATION_CHAT:
        after = ""
    else:
        raise CodeError(1001, "unknown sessionType")
    deliveries = _transfer(sb, msg)
    if after and msg["contentType"] != TYPING:
        sb.after(after, callback_body(msg))
    operation_id = OPERATION_ID.get()

    def push() -> None:
        asyncio.get_running_loop().call_later(PIPELINE_DELAY, _deliver, sb, deliveries, operation_id)

    return Sent(msg, push)


def _deliver(sb: Sandbox, deliveries: list[Delivery], operation_id: str) -> None:
    """The push service: each delivery to every connection of its receivers."""
    for receivers, conversation_id, pb in deliveries:
        sb.connections.push(receivers, conversation_id, pb, operation_id)
        if pb.contentType == GROUP_DISMISSED_NOTIFICATION and conversation_id.startswith("n_"):
            # groupMessagesHandler: once a dismissal notice (from anyone) is pushed, the push service
            # calls DismissGroup(deleteMember=true) as an app admin, for any group with an owner.
            owner = sb.group_owner(pb.groupID)
            if owner and pb.groupID in sb.groups:
                sb.dismiss(pb.groupID, delete_members=True, owner=owner)


def _encapsulate(sb: Sandbox, msg: dict[str, Any]) -> None:
    msg["serverMsgID"] = md5_id()
    if msg["sendTime"] == 0:
        msg["sendTime"] = sb.now_ms()
    off = {
        REVOKE: ("unreadCount", "offlinePush"),
        HAS_READ_RECEIPT: ("conversationUpdate", "senderConversationUpdate", "unreadCount", "offlinePush"),
        TYPING: ("history", "persistent", "senderSync", "conversationUpdate", "senderConversationUpdate",
                 "unreadCount", "offlinePush"),
    }.get(msg["contentType"], ())  # fmt: skip
    if msg["options"]:  # Go's SetSwitchFromOptions writes into a nil map and loses the value
        for key in off:
            msg["options"][key] = False


async def _verify_single(sb: Sandbox, msg: dict[str, Any]) -> None:
    if sb.is_admin(msg["sendID"]) or is_notification_type(msg["contentType"]):
        return  # v3.8.3: no before-callback, no blacklist, no friend check
    if msg["contentType"] != TYPING:
        await sb.before("callbackBeforeSendSingleMsgCommand", callback_body(msg))
    if msg["sendID"] in sb.blacks.get(msg["recvID"], {}):
        raise CodeError(1302, "BlockedByPeer")
    if sb.config.friend_verify and msg["sendID"] not in sb.friends.get(msg["recvID"], {}):
        raise CodeError(1303, "NotPeersFriend")


async def _verify_group(sb: Sandbox, msg: dict[str, Any]) -> None:
    group = sb.groups.get(msg["groupID"])
    if group is None:
        raise CodeError(1004, "group not found")
    if group["status"] == GROUP_DISMISSED and msg["contentType"] != GROUP_DISMISSED_NOTIFICATION:
        raise CodeError(1204, "DismissedAlreadyError")
    if sb.is_admin(msg["sendID"]) or is_notification_type(msg["contentType"]):
        return
    member = sb.members.get(msg["groupID"], {}).get(msg["sendID"])
    if member is None:
        raise CodeError(1203, "NotInGroupYetError")
    if member["roleLevel"] != OWNER:
        if member["muteEndTime"] >= sb.now_ms():
            raise CodeError(1402, "MutedInGroup")
        if group["status"] == GROUP_MUTED and member["roleLevel"] != GROUP_ADMIN:
            raise CodeError(1403, "MutedGroup")


def _transfer(sb: Sandbox, msg: dict[str, Any]) -> list[Delivery]:
    """msg-transfer's ``categorizeMessageLists`` and the push service's choice of receivers.

    A message is stored in its chat conversation (unless ``history`` is off) and pushed. A
    notification (``isNotNotification`` false) is stored in its ``n_`` conversation only when
    ``history`` is on, and pushed under ``notificationMsgs``; with ``isSendMsg`` a copy, whose
    options keep only its ``offlinePush`` and ``unreadCount``, is also stored and pushed as a
    message of the chat conversation (the copy goes first, as ``handleMsg`` runs before
    ``handleNotification``)."""
    msg["status"] = MSG_STATUS_SEND_SUCCESS
    if option(msg, "isNotNotification"):
        _store(sb, msg, chat_conversation_id(msg))
        return [(_receivers(sb, msg), chat_conversation_id(msg), to_pb(msg))]
    deliveries = []
    if option(msg, "isSendMsg"):
        copy = dict(msg, options={"offlinePush": option(msg, "offlinePush"), "unreadCount": option(msg, "unreadCount")})
        msg["options"] = msg["options"] | {"offlinePush": False, "unreadCount": False}
        _store(sb, copy, chat_conversation_id(copy))
        deliveries.append((_receivers(sb, copy), chat_conversation_id(copy), to_pb(copy)))
    _store(sb, msg, push_conversation_id(msg))
    deliveries.append((_receivers(sb, msg), push_conversation_id(msg), to_pb(msg)))
    return deliveries


def _receivers(sb: Sandbox, msg: dict[str, Any]) -> list[str]:
    """``handleMs2PsChat``: the receiver and the sender (unless ``senderSync`` is off or they are
    one), or the group's members at push time; a member who quit or was kicked gets the
    notification of it too, and from then on reads the group's messages only up to there."""
    if msg["sessionType"] != GROUP:
        if not option(msg, "senderSync") or msg["sendID"] == msg["recvID"]:
            return [msg["recvID"]]
        return [msg["recvID"], msg["sendID"]]
    receivers = list(sb.members.get(msg["groupID"], {}))
    if msg["contentType"] in (MEMBER_QUIT_NOTIFICATION, MEMBER_KICKED_NOTIFICATION):
        tips = notification_tips(msg)
        left = tips.get("quitUser") if msg["contentType"] == MEMBER_QUIT_NOTIFICATION else tips.get("kickedUserList")
        for user in left if isinstance(left, list) else [left]:
            user_id = user.get("userID") if isinstance(user, dict) else None
            if isinstance(user_id, str) and user_id:
                sb.freeze_conversation(user_id, chat_conversation_id(msg))
                receivers.append(user_id)
    return receivers


def notification_tips(msg: dict[str, Any]) -> dict[str, Any]:
    """The tips of a notification: ``content`` is ``{"detail": "<tips JSON>"}`` (``NotificationElem``)."""
    try:
        detail = orjson.loads(base64.b64decode(msg["content"]))["detail"]
        tips = orjson.loads(detail)
    except (ValueError, TypeError, KeyError):
        return {}
    return tips if isinstance(tips, dict) else {}


def _store(sb: Sandbox, msg: dict[str, Any], conversation_id: str) -> None:
    """Seq, hasReadSeq, conversation records (``BatchInsertChat2Cache`` and what follows it)."""
    if not option(msg, "history"):
        return  # pushed, never stored: it keeps seq 0
    stored = sb.messages.setdefault(conversation_id, [])
    msg["seq"] = len(stored) + 1
    stored.append(msg)
    if conversation_id.startswith("n_"):
        return  # handleNotification moves no read marks and creates no conversation
    sb.has_read[(msg["sendID"], conversation_id)] = msg["seq"]
    if msg["seq"] == 1:
        # isNewConversation: CreateSingleChatConversations / CreateGroupChatConversations
        if msg["sessionType"] == GROUP:
            for member in sb.members.get(msg["groupID"], {}):
                sb.touch_conversation(member, conversation_id, session_type=GROUP, peer="", group=msg["groupID"])
        else:
            for owner, peer in ((msg["sendID"], msg["recvID"]), (msg["recvID"], msg["sendID"])):
                sb.touch_conversation(owner, conversation_id, session_type=msg["sessionType"], peer=peer, group="")


def callback_body(msg: dict[str, Any]) -> dict[str, Any]:
    """``CommonCallbackReq`` + recvID or groupID, in OpenIM's field order (contract 8.5)."""
    raw = base64.b64decode(msg["content"]) if msg["content"] else b""
    if is_notification_type(msg["contentType"]):
        try:  # GetContent proto-decodes a notification's content as TipsComm
            content = sdkws_pb2.TipsComm.FromString(raw).jsonDetail
        except DecodeError:
            content = ""
    else:
        content = raw.decode(errors="replace")
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
        "content": content,
        "seq": 0,  # assigned later, in msg-transfer
        "atUserList": msg["atUserIDList"],
        "faceURL": msg["senderFaceURL"],
        "ex": msg["ex"],
    }
    return body | ({"groupID": msg["groupID"]} if msg["sessionType"] == GROUP else {"recvID": msg["recvID"]})


# -- reads ------------------------------------------------------------------------------------


def visible(sb: Sandbox, user_id: str, conversation_id: str, seq: int) -> dict[str, Any]:
    """The message at ``seq`` as ``user_id`` may read it (``GetMessageBySeqs``)."""
    stored = sb.messages.get(conversation_id, [])
    if not 1 <= seq <= len(stored):
        return deleted_placeholder(seq)
    msg = stored[seq - 1]
    if msg.get("deleted") or (user_id, conversation_id, seq) in sb.hidden:
        return deleted_placeholder(seq)
    return msg


def user_max_seq(sb: Sandbox, user_id: str, conversation_id: str) -> int:
    """The last seq ``user_id`` may read: the conversation's, or the one its record was frozen at
    when the user left the group (``SetConversationMaxSeq``)."""
    max_seq = sb.max_seq(conversation_id)
    frozen = sb.conversations.get((user_id, conversation_id), {}).get("maxSeq", 0)
    return min(max_seq, frozen) if frozen else max_seq


def pull_by_ranges(
    sb: Sandbox, user_id: str, ranges: Iterable[tuple[str, int, int, int]], descending: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``PullMessageBySeqs`` (WS 1002, REST pull_msg_by_seq): ``(msgs, notificationMsgs)`` of
    ``{"Msgs", "isEnd", "endSeq"}``; conversations without messages, or (for chats) without a
    record of ``user_id``'s, are left out. ``user_id`` is taken as given (v3.8.3)."""
    msgs: dict[str, Any] = {}
    notifications: dict[str, Any] = {}
    for conversation_id, begin, end, num in ranges:
        max_seq = user_max_seq(sb, user_id, conversation_id)
        min_seq = 1 if max_seq else 0
        if conversation_id.startswith("n_"):
            seqs = [s for s in range(begin, end + 1) if min_seq <= s <= max_seq]
            target = notifications
        else:
            if (user_id, conversation_id) not in sb.conversations:
                continue
            begin, end = max(begin, min_seq), min(end, max_seq)
            if min_seq > end or end < begin:
                continue
            seqs = list(range(begin, end + 1)) if end - begin + 1 <= num else list(range(end - num + 1, end + 1))
            target = msgs
        found = [visible(sb, user_id, conversation_id, s) for s in seqs]
        if not found:
            continue
        is_end = begin <= min_seq if descending else max_seq <= end
        target[conversation_id] = {"Msgs": found, "isEnd": is_end, "endSeq": 0}
    return msgs, notifications


def seq_messages(
    sb: Sandbox, user_id: str, wanted: Iterable[tuple[str, list[int]]], descending: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GetSeqMessage`` (WS 1005): an entry for every conversation asked, even empty (the SDK
    throws without it)."""
    msgs: dict[str, Any] = {}
    notifications: dict[str, Any] = {}
    for conversation_id, seqs in wanted:
        max_seq = user_max_seq(sb, user_id, conversation_id)
        min_seq = 1 if max_seq else 0
        is_end, end_seq, picked = False, 0, []
        for seq in seqs:
            if seq <= 0:
                continue
            if min_seq <= seq <= max_seq:
                picked.append(seq)
            elif seq < min_seq and descending:
                is_end, end_seq = True, min_seq
            elif seq > max_seq and not descending:
                is_end, end_seq = True, max_seq
        entry = (notifications if conversation_id.startswith("n_") else msgs).setdefault(
            conversation_id, {"Msgs": [], "isEnd": False, "endSeq": 0}
        )
        entry["Msgs"] += [visible(sb, user_id, conversation_id, s) for s in picked]
        entry["isEnd"], entry["endSeq"] = is_end, end_seq
    return msgs, notifications


def conversation_ids(sb: Sandbox, owner: str) -> list[str]:
    return [cid for (o, cid) in sb.conversations if o == owner]


def has_read_and_max_seq(sb: Sandbox, user_id: str, wanted: list[str]) -> dict[str, dict[str, int]]:
    """``GetConversationsHasReadAndMaxSeq`` (WS 1006, REST): every conversation of ``user_id``
    when ``wanted`` is empty; ``user_id`` is taken as given (v3.8.3)."""
    ids = wanted or conversation_ids(sb, user_id)
    seqs = {}
    for conversation_id in ids:
        stored = sb.messages.get(conversation_id, [])
        record = sb.conversations.get((user_id, conversation_id))
        seqs[conversation_id] = {
            "maxSeq": (record or {}).get("maxSeq") or len(stored),
            "hasReadSeq": sb.has_read.get((user_id, conversation_id), 0),
            "maxSeqTime": stored[-1]["sendTime"] if stored else 0,
        }
    return seqs
