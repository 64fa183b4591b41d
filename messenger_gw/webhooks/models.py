"""Typed models of OpenIM's webhook callbacks (contract, sections 8.4 and 8.5).

Every ``callbackCommand`` OpenIM v3.8.3 sends maps to a model here. Quirks
handled: the after-revoke event is ``callbackBeforeAfterMsgCommand``;
``groupType`` in after-dismiss is ``string(int32)``, a control character
(U+0002 for 2); ``initMemberList`` in after-create lists members twice;
``content`` is the message content as a JSON *string*; ``connID`` is empty.
A command not listed is still accepted (as :class:`UnknownEvent`) and stored.

For the before-callbacks, :data:`ACTORS` names the field that holds the user
acting (whom the ban rule checks) and :data:`ECHOED` the fields OpenIM copies
back from any answer, allow included (contract 8.6).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import orjson

from messenger_gw.moderation import message_text


class InvalidEvent(ValueError):
    """The body does not have the shape its command promises."""


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string")
    return value


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{name} must be an integer")
    return value


def _objects(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidEvent(f"{name} must be a list of objects")
    return value


def _strs(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEvent(f"{name} must be a list of strings")
    return tuple(value)


_READERS: dict[str, Callable[[dict[str, Any], str], Any]] = {"str": _str, "int": _int, "tuple[str, ...]": _strs}


def wire(name: str, default: Any) -> Any:
    """A model field read from the body's ``name`` by :meth:`Event.parse`, with the reader its type names."""
    return dataclasses.field(default=default, metadata={"wire": name})


@dataclasses.dataclass(frozen=True)
class Event:
    """A callback: its command, its body as received and the ``Operationid`` header it came with."""

    command: str
    body: dict[str, Any]
    operation_id: str = dataclasses.field(default="", kw_only=True)
    identity_fields: ClassVar[tuple[str, ...]] = ("operationID",)

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        """The model with each :func:`wire` field read from the body by its type's reader."""
        values = {
            field.name: _READERS[str(field.type)](body, field.metadata["wire"])
            for field in dataclasses.fields(cls)
            if "wire" in field.metadata
        }
        return cls(command, body, **values)

    @property
    def key(self) -> str:
        """What makes two deliveries the same event: the command and an ID OpenIM gave it."""
        for name in self.identity_fields:
            value = self.body.get(name)
            if isinstance(value, str | int) and value != "":
                return f"{self.command}:{name}={value}"
        # No ID in the body (kick, quit, register, read receipts): the body and the request's
        # operationID. OpenIM never retries an after-callback, so the same body under another
        # operationID is another event (a second kick of the same user), not a duplicate.
        digest = hashlib.sha256(orjson.dumps(self.body, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\0" + self.operation_id.encode())
        return f"{self.command}:sha256={digest.hexdigest()}"

    @property
    def actors(self) -> tuple[str, ...]:
        """The users acting in a before-callback, whom the ban rule checks (:data:`ACTORS`)."""
        return tuple(dict.fromkeys(user for name in ACTORS.get(self.command, ()) if (user := _str(self.body, name))))

    @property
    def is_notification(self) -> bool:
        """A notification (content types 1000-5000): OpenIM's own message, sent in the operator's name."""
        content_type = self.body.get("contentType")
        return isinstance(content_type, int) and NOTIFICATIONS[0] <= content_type <= NOTIFICATIONS[1]

    @property
    def echoed(self) -> dict[str, Any]:
        """What an allow answer repeats so that OpenIM, copying it back, changes nothing (:data:`ECHOED`)."""
        return {name: self.body.get(name) for name in ECHOED.get(self.command, ())}


@dataclasses.dataclass(frozen=True)
class MessageEvent(Event):
    """before/afterSendSingleMsg, before/afterSendGroupMsg, beforeMsgModify."""

    send_id: str = wire("sendID", "")
    recv_id: str = wire("recvID", "")
    group_id: str = wire("groupID", "")
    server_msg_id: str = wire("serverMsgID", "")
    client_msg_id: str = wire("clientMsgID", "")
    sender_platform_id: int = wire("senderPlatformID", 0)
    session_type: int = wire("sessionType", 0)
    content_type: int = wire("contentType", 0)
    content: str = wire("content", "")  # the content as a JSON string, not base64
    send_time: int = wire("sendTime", 0)
    identity_fields: ClassVar[tuple[str, ...]] = ("serverMsgID", "clientMsgID", "operationID")

    @property
    def message_id(self) -> str:
        """The same for every callback about one send (send, then modify), empty if OpenIM gave none."""
        return self.server_msg_id or self.client_msg_id

    @property
    def text(self) -> str:
        """The human-readable text of a text (101) or @ (106) message; empty for other content."""
        return message_text(self.content_type, self.content)


@dataclasses.dataclass(frozen=True)
class RevokeEvent(Event):
    """afterRevokeMsg, sent as ``callbackBeforeAfterMsgCommand``."""

    conversation_id: str = wire("conversationID", "")
    seq: int = wire("seq", 0)
    user_id: str = wire("userID", "")

    @property
    def key(self) -> str:
        return f"{self.command}:{self.conversation_id}:{self.seq}"


@dataclasses.dataclass(frozen=True)
class GroupCreateEvent(Event):
    """before/afterCreateGroup. The after version lists every member twice; ``members`` lists each once.

    The SDK leaves the flattened ``ownerUserID`` empty: the owner is then the member listed with
    role level 100 (contract 8.6).
    """

    group_id: str = ""
    owner_user_id: str = ""
    members: tuple[str, ...] = ()

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        listed = _objects(body, "initMemberList")
        members = tuple(dict.fromkeys(_str(m, "userID") for m in listed))
        owners = [_str(m, "userID") for m in listed if _int(m, "roleLevel") == GROUP_OWNER]
        owner = _str(body, "ownerUserID") or next(iter(owners), "")
        return cls(command, body, group_id=_str(body, "groupID"), owner_user_id=owner, members=members)

    @property
    def key(self) -> str:
        return f"{self.command}:{self.group_id}" if self.group_id else super().key

    @property
    def actors(self) -> tuple[str, ...]:
        # OpenIM lets only the owner (or an app admin) create a group, and /im binds ownerUserID to the caller.
        return (self.owner_user_id,) if self.command in ACTORS and self.owner_user_id else ()


@dataclasses.dataclass(frozen=True)
class GroupKickEvent(Event):
    """afterKickGroupMember."""

    group_id: str = wire("groupID", "")
    kicked_user_ids: tuple[str, ...] = wire("kickedUserIDs", ())
    reason: str = wire("reason", "")


@dataclasses.dataclass(frozen=True)
class GroupDismissEvent(Event):
    """afterDismissGroup: ``groupType`` arrives as ``string(int32)``, e.g. "\\u0002" for 2."""

    group_id: str = ""
    owner_id: str = ""
    group_type: int = 0
    member_ids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        raw_type = body.get("groupType", "")
        if isinstance(raw_type, str):
            group_type = ord(raw_type) if len(raw_type) == 1 else 0
        elif isinstance(raw_type, int) and not isinstance(raw_type, bool):
            group_type = raw_type
        else:
            raise InvalidEvent("groupType must be a one-character string")
        return cls(
            command,
            body,
            group_id=_str(body, "groupID"),
            owner_id=_str(body, "ownerID"),
            group_type=group_type,
            member_ids=_strs(body, "membersID"),
        )

    @property
    def key(self) -> str:
        return f"{self.command}:{self.group_id}"


@dataclasses.dataclass(frozen=True)
class GroupMemberEvent(Event):
    """Quit, join, invite, member-join, transfer, set-member-info, set-group-info callbacks."""

    group_id: str = ""
    user_ids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        users: list[str] = [u for u in (_str(body, "userID"), _str(body, "inviterUserID")) if u]
        users += _strs(body, "invitedUserIDs")
        users += [_str(m, "userID") for m in _objects(body, "memberList")]
        return cls(command, body, group_id=_str(body, "groupID"), user_ids=tuple(dict.fromkeys(users)))


@dataclasses.dataclass(frozen=True)
class UserRegisterEvent(Event):
    """before/afterUserRegister: ``users`` are UserInfo objects."""

    user_ids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        return cls(command, body, user_ids=tuple(_str(u, "userID") for u in _objects(body, "users")))


@dataclasses.dataclass(frozen=True)
class UserStatusEvent(Event):
    """afterUserOnline / afterUserOffline / afterUserKickOff (``connID`` is always empty)."""

    user_id: str = wire("userID", "")
    platform_id: int = wire("platformID", 0)
    seq: int = wire("seq", 0)  # the time in ms

    @property
    def key(self) -> str:
        return f"{self.command}:{self.user_id}:{self.platform_id}:{self.seq}"


@dataclasses.dataclass(frozen=True)
class UserEvent(Event):
    """Other user-centred callbacks (profile updates, friends, blacklist, read receipts, pushes)."""

    user_id: str = ""

    @classmethod
    def parse(cls, command: str, body: dict[str, Any]) -> Event:
        user = _str(body, "userID") or _str(body, "fromUserID") or _str(body, "ownerUserID") or _str(body, "sendID")
        return cls(command, body, user_id=user)


@dataclasses.dataclass(frozen=True)
class UnknownEvent(Event):
    """A command this gateway does not know: accepted, counted and stored as it came."""


Kind = Literal["before", "after"]

COMMANDS: dict[str, tuple[Kind, type[Event]]] = {
    # Messages
    "callbackBeforeSendSingleMsgCommand": ("before", MessageEvent),
    "callbackAfterSendSingleMsgCommand": ("after", MessageEvent),
    "callbackBeforeSendGroupMsgCommand": ("before", MessageEvent),
    "callbackAfterSendGroupMsgCommand": ("after", MessageEvent),
    "callbackBeforeMsgModifyCommand": ("before", MessageEvent),
    "callbackAfterSingleMsgReadCommand": ("after", UserEvent),
    "callbackAfterGroupMsgReadCommand": ("after", UserEvent),
    "callbackBeforeAfterMsgCommand": ("after", RevokeEvent),  # afterRevokeMsg (sic)
    # Online status and push
    "callbackAfterUserOnlineCommand": ("after", UserStatusEvent),
    "callbackAfterUserOfflineCommand": ("after", UserStatusEvent),
    "callbackAfterUserKickOffCommand": ("after", UserStatusEvent),
    "callbackBeforeOfflinePushCommand": ("before", UserEvent),
    "callbackBeforeOnlinePushCommand": ("before", UserEvent),
    "callbackBeforeGroupOnlinePushCommand": ("before", UserEvent),
    # Users
    "callbackBeforeUserRegisterCommand": ("before", UserRegisterEvent),
    "callbackAfterUserRegisterCommand": ("after", UserRegisterEvent),
    "callbackBeforeUpdateUserInfoCommand": ("before", UserEvent),
    "callbackAfterUpdateUserInfoCommand": ("after", UserEvent),
    "callbackBeforeUpdateUserInfoExCommand": ("before", UserEvent),
    "callbackAfterUpdateUserInfoExCommand": ("after", UserEvent),
    # Groups
    "callbackBeforeCreateGroupCommand": ("before", GroupCreateEvent),
    "callbackAfterCreateGroupCommand": ("after", GroupCreateEvent),
    "callbackBeforeMembersJoinGroupCommand": ("before", GroupMemberEvent),
    "callbackBeforeSetGroupMemberInfoCommand": ("before", GroupMemberEvent),
    "callbackAfterSetGroupMemberInfoCommand": ("after", GroupMemberEvent),
    "callbackAfterQuitGroupCommand": ("after", GroupMemberEvent),
    "callbackAfterKickGroupCommand": ("after", GroupKickEvent),
    "callbackAfterDisMissGroupCommand": ("after", GroupDismissEvent),
    "callbackBeforeJoinGroupCommand": ("before", GroupMemberEvent),
    "callbackAfterJoinGroupCommand": ("after", GroupMemberEvent),
    "callbackAfterTransferGroupOwnerCommand": ("after", GroupMemberEvent),
    "callbackBeforeInviteJoinGroupCommand": ("before", GroupMemberEvent),
    "callbackBeforeSetGroupInfoCommand": ("before", GroupMemberEvent),
    "callbackAfterSetGroupInfoCommand": ("after", GroupMemberEvent),
    "callbackBeforeSetGroupInfoExCommand": ("before", GroupMemberEvent),
    "callbackAfterSetGroupInfoExCommand": ("after", GroupMemberEvent),
    # Friends and blacklist
    "callbackBeforeAddFriendCommand": ("before", UserEvent),
    "callbackAfterAddFriendCommand": ("after", UserEvent),
    "callbackBeforeAddFriendAgreeCommand": ("before", UserEvent),
    "callbackAfterAddFriendAgreeCommand": ("after", UserEvent),
    "callbackAfterDeleteFriendCommand": ("after", UserEvent),
    "callbackBeforeImportFriendsCommand": ("before", UserEvent),
    "callbackAfterImportFriendsCommand": ("after", UserEvent),
    "callbackBeforeSetFriendRemarkCommand": ("before", UserEvent),
    "callbackAfterSetFriendRemarkCommand": ("after", UserEvent),
    "callbackBeforeAddBlackCommand": ("before", UserEvent),
    "callbackAfterRemoveBlackCommand": ("after", UserEvent),
}


NOTIFICATIONS = (1000, 5000)  # OpenIM's constant.NotificationBegin and NotificationEnd
GROUP_OWNER = 100  # roleLevel

# The field naming the user who acts, for each before-callback whose body names one. The others
# name only the users acted upon (a profile or member being edited, users invited, registered or
# joining, friends imported), or nobody: the ban rule leaves those alone, so an admin can still
# edit a banned user (docs/webhooks.md, "the ban table").
ACTORS: dict[str, tuple[str, ...]] = {
    "callbackBeforeSendSingleMsgCommand": ("sendID",),
    "callbackBeforeSendGroupMsgCommand": ("sendID",),
    "callbackBeforeMsgModifyCommand": ("sendID",),
    "callbackBeforeOfflinePushCommand": ("sendID",),
    "callbackBeforeOnlinePushCommand": ("sendID",),
    "callbackBeforeGroupOnlinePushCommand": ("sendID",),
    "callbackBeforeCreateGroupCommand": ("ownerUserID",),  # or the role-100 member: GroupCreateEvent.actors
    "callbackBeforeJoinGroupCommand": ("applyID",),
    "callbackBeforeAddFriendCommand": ("fromUserID",),
    "callbackBeforeAddFriendAgreeCommand": ("blackUserID",),  # OpenIM's toUserID, the user answering
    "callbackBeforeSetFriendRemarkCommand": ("ownerUserID",),
    "callbackBeforeAddBlackCommand": ("ownerUserID",),
}

# Fields OpenIM copies from the answer whether or not it is there (v3.8.3 group/callback.go): an
# allow answer without them would set the group's ID to "" (and, for Ex, clear the others).
ECHOED: dict[str, tuple[str, ...]] = {
    "callbackBeforeSetGroupInfoCommand": ("groupID", "groupName", "faceURL", "introduction"),
    "callbackBeforeSetGroupInfoExCommand": (
        "groupID",
        "groupName",
        "faceURL",
        "introduction",
        "ex",
        "needVerification",
        "lookMemberInfo",
        "applyMemberFriend",
    ),
}


def is_before(command: str) -> bool:
    return COMMANDS.get(command, ("after", UnknownEvent))[0] == "before"


def parse_event(command: str, body: dict[str, Any], *, operation_id: str = "") -> tuple[Kind, Event]:
    """The kind and typed model of a callback; an unknown command is an after-event kept as it came.

    ``operation_id`` is the request's ``Operationid`` header: part of the key of an event whose
    body carries no ID.
    """
    kind, model = COMMANDS.get(command, ("after", UnknownEvent))
    event = model.parse(command, body)
    for name in ACTORS.get(command, ()):
        _str(body, name)  # read strictly here, like every model field: the ban rule never meets a wrong type
    return kind, dataclasses.replace(event, operation_id=operation_id) if operation_id else event
