"""OpenIM's notifications (``pkg/notification/msg.go``): the tips the group and friend services
send as messages, so the SDK's group and friend events fire.

A notification is a message from the operator (``msgFrom`` 200) whose ``content`` is
``{"detail": "<tips JSON>"}`` and whose options say ``isNotNotification: false``, with the
rest of its options from ``config/notification.yml``: every group and friend notification is
``reliabilityLevel`` 1, so it is pushed under ``notificationMsgs`` of ``n_...`` without being
stored (seq 0); the ones with ``isSendMsg`` (group created, member quit, kicked, invited,
entered, group dismissed, mutes, owner transferred, friend application approved, ...) also
leave a copy as a message of the chat conversation, with a seq. Group notifications go to the
group (sessionType 3), the others from one user to another (sessionType 1).

OpenIM sends them from an in-memory queue after the RPC's work and only logs a failure; here the
route awaits the send (its push still leaves later) and likewise only logs a failure.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orjson

from . import messages
from .envelope import CodeError
from .state import Sandbox

log = logging.getLogger(__name__)

SYSTEM_MSG = 200  # constant.SysMsgType
SINGLE, GROUP = 1, 3

GROUP_CREATED, GROUP_INFO_SET, JOIN_GROUP_APPLICATION, MEMBER_QUIT = 1501, 1502, 1503, 1504
GROUP_APPLICATION_ACCEPTED, GROUP_APPLICATION_REJECTED, GROUP_OWNER_TRANSFERRED = 1505, 1506, 1507
MEMBER_KICKED, MEMBER_INVITED, MEMBER_ENTER, GROUP_DISMISSED = 1508, 1509, 1510, 1511
GROUP_MEMBER_MUTED, GROUP_MEMBER_CANCEL_MUTED, GROUP_MUTED, GROUP_CANCEL_MUTED = 1512, 1513, 1514, 1515
GROUP_INFO_SET_ANNOUNCEMENT, GROUP_INFO_SET_NAME = 1519, 1520
FRIEND_APPLICATION_APPROVED, FRIEND_APPLICATION_REJECTED, FRIEND_APPLICATION = 1201, 1202, 1203
FRIEND_DELETED, BLACK_ADDED, BLACK_DELETED, FRIENDS_INFO_UPDATE = 1205, 1207, 1208, 1210
GROUP_MEMBER_INFO_SET, GROUP_MEMBER_SET_TO_ADMIN, GROUP_MEMBER_SET_TO_ORDINARY = 1516, 1517, 1518
USER_INFO_UPDATED = 1303


@dataclasses.dataclass(frozen=True)
class Kind:
    """One entry of ``config/notification.yml`` (all of them ``reliabilityLevel`` 1, ``unreadCount`` false)."""

    send_msg: bool  # isSendMsg: a copy is stored in the chat conversation
    offline_push: bool  # offlinePush.enable
    title: str
    desc: str
    ext: str
    session_type: int = GROUP


def _group(name: str, send_msg: bool, session_type: int = GROUP) -> Kind:
    return Kind(send_msg, False, f"{name} title", f"{name} desc", f"{name} ext", session_type)


def _friend(text: str, send_msg: bool = False, offline_push: bool = True) -> Kind:
    return Kind(send_msg, offline_push, text, text, text, SINGLE)


KINDS: dict[int, Kind] = {
    GROUP_CREATED: Kind(True, False, "create group title", "create group desc", "create group ext"),
    GROUP_INFO_SET: _group("groupInfoSet", False),
    JOIN_GROUP_APPLICATION: _group("joinGroupApplication", False, SINGLE),
    MEMBER_QUIT: _group("memberQuit", True),
    GROUP_APPLICATION_ACCEPTED: _group("groupApplicationAccepted", False, SINGLE),
    GROUP_APPLICATION_REJECTED: _group("groupApplicationRejected", False, SINGLE),
    GROUP_OWNER_TRANSFERRED: _group("groupOwnerTransferred", True),
    MEMBER_KICKED: _group("memberKicked", True),
    MEMBER_INVITED: _group("memberInvited", True),
    MEMBER_ENTER: _group("memberEnter", True),
    GROUP_DISMISSED: _group("groupDismissed", True),
    GROUP_MEMBER_MUTED: _group("groupMemberMuted", True),
    GROUP_MEMBER_CANCEL_MUTED: _group("groupMemberCancelMuted", True),
    GROUP_MUTED: _group("groupMuted", True),
    GROUP_CANCEL_MUTED: _group("groupCancelMuted", True),
    GROUP_INFO_SET_ANNOUNCEMENT: _group("groupInfoSetAnnouncement", True),
    GROUP_INFO_SET_NAME: _group("groupInfoSetName", True),
    FRIEND_APPLICATION: _friend("Somebody applies to add you as a friend", offline_push=False),
    FRIEND_APPLICATION_APPROVED: _friend("Someone applies to add your friend application", send_msg=True),
    FRIEND_APPLICATION_REJECTED: _friend("Someone rejected your friend application"),
    FRIEND_DELETED: _friend("deleted a friend"),
    BLACK_ADDED: _friend("blocked a user"),
    BLACK_DELETED: _friend("Remove a blocked user"),
    FRIENDS_INFO_UPDATE: _friend("friend info updated"),
    USER_INFO_UPDATED: _friend("userInfo updated"),
    GROUP_MEMBER_INFO_SET: _group("groupMemberInfoSet", False),
    # Not in v3.8.3's notification.yml: the zero config, so neither stored nor pushed offline, no texts.
    GROUP_MEMBER_SET_TO_ADMIN: Kind(False, False, "", "", ""),
    GROUP_MEMBER_SET_TO_ORDINARY: Kind(False, False, "", "", ""),
}


def notification_msg(
    sb: Sandbox, send_id: str, recv_id: str, content_type: int, tips: dict[str, Any], *, with_sender: bool = False
) -> dict[str, Any]:
    """``NotificationSender.send``: the MsgData of a notification (``with_sender`` is
    ``WithRpcGetUserName``: the sender's nickname and face)."""
    kind = KINDS[content_type]
    sender = sb.users.get(send_id, {}) if with_sender else {}
    content = orjson.dumps({"detail": orjson.dumps(tips).decode()})
    return {
        "sendID": send_id,
        "recvID": recv_id,
        "groupID": recv_id if kind.session_type == GROUP else "",
        "clientMsgID": messages.md5_id(),
        "serverMsgID": "",
        "senderPlatformID": 0,
        "senderNickname": sender.get("nickname", ""),
        "senderFaceURL": sender.get("faceURL", ""),
        "sessionType": kind.session_type,
        "msgFrom": SYSTEM_MSG,
        "contentType": content_type,
        "content": messages.b64(content),
        "seq": 0,
        "sendTime": 0,
        "createTime": sb.now_ms(),
        "status": 0,
        "isRead": False,
        # msgprocessor.NewOptions, then GetOptionsByNotification for reliabilityLevel 1
        "options": {
            "isNotNotification": False,
            "isSendMsg": kind.send_msg,
            "history": False,
            "persistent": False,
            "offlinePush": kind.offline_push,
            "unreadCount": False,
            "conversationUpdate": False,
            "senderSync": True,
            "notPrivate": False,
            "senderConversationUpdate": False,
            "reactionFromCache": False,
        },
        "offlinePushInfo": {
            "title": kind.title,
            "desc": kind.desc,
            "ex": kind.ext,
            "iOSPushSound": "",
            "iOSBadgeCount": False,
            "signalInfo": "",
        },
        "atUserIDList": None,
        "attachedInfo": "",
        "ex": "",
    }


async def notify(
    sb: Sandbox, send_id: str, recv_id: str, content_type: int, tips: dict[str, Any], *, with_sender: bool = False
) -> None:
    """Send a notification through the message service; a refusal is only logged, as OpenIM does."""
    try:
        sent = await messages.send(
            sb, notification_msg(sb, send_id, recv_id, content_type, tips, with_sender=with_sender)
        )
    except CodeError as exc:
        log.warning("notification %d not sent: errCode %d", content_type, exc.code)
        return
    sent.push()
