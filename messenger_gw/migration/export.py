"""The app's export, as ``messenger-gw import`` reads it (``docs/import.md``): one JSON Lines file per kind.

Each line is one JSON object. A line that is not one, or that misses a field, or names something OpenIM
v3.8.3 would refuse whatever is done with it, is a :class:`BadLine`, reported with its file and line
number; the lines after it are read on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from messenger_gw.auth import valid_user_id

USERS, FRIENDSHIPS, GROUPS, MESSAGES = "users", "friendships", "groups", "messages"
KINDS = (USERS, FRIENDSHIPS, GROUPS, MESSAGES)
# getSendMsgReq: the content types /msg/send_msg takes over REST, but 1400 (notifications, not history).
MESSAGE_CONTENT_TYPES = frozenset({101, 102, 103, 104, 105, 106, 110})
SINGLE_CHAT, GROUP_CHAT = 1, 3


class BadLine(ValueError):
    """A line of the export that cannot be imported; its text says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    """Where a record comes from: its file's kind and its line number (from 1)."""

    kind: str
    number: int


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    line: Line
    user_id: str
    nickname: str
    face_url: str
    ex: str

    @property
    def key(self) -> str:
        return self.user_id


@dataclasses.dataclass(frozen=True, slots=True)
class Friendship:
    line: Line
    user_id: str
    friend_user_id: str

    @property
    def key(self) -> str:
        """The pair, whichever way round the line gives it: a friendship is both ways in OpenIM."""
        return "|".join(sorted((self.user_id, self.friend_user_id)))


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    line: Line
    group_id: str
    name: str
    owner: str
    admins: tuple[str, ...]
    members: tuple[str, ...]
    info: dict[str, Any]  # the rest of OpenIM's groupInfo, as given

    @property
    def key(self) -> str:
        return self.group_id


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    line: Line
    message_id: str
    send_id: str
    recv_id: str
    group_id: str
    send_time: int  # unix ms
    content_type: int
    content: dict[str, Any]
    sender_platform_id: int
    sender_nickname: str
    sender_face_url: str
    ex: str

    @property
    def key(self) -> str:
        return self.message_id

    @property
    def conversation_id(self) -> str:
        """OpenIM's ID of the message's conversation: ``si_<a>_<b>`` (sorted) or ``sg_<groupID>``."""
        if self.group_id:
            return f"sg_{self.group_id}"
        low, high = sorted((self.send_id, self.recv_id))
        return f"si_{low}_{high}"

    @property
    def session_type(self) -> int:
        return GROUP_CHAT if self.group_id else SINGLE_CHAT


Record = User | Friendship | Group | Message


def read(path: Path, kind: str) -> Iterator[Record | tuple[Line, BadLine]]:
    """Every line of ``path`` as a record, or its line and why it is bad; blank lines are skipped."""
    parse: Callable[[Line, _Fields], Record] = PARSERS[kind]
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            line = Line(kind, number)
            try:
                value = orjson.loads(raw)
                if not isinstance(value, dict):
                    raise BadLine("not a JSON object")
                yield parse(line, _Fields(value))
            except orjson.JSONDecodeError as exc:
                yield line, BadLine(f"not JSON: {exc.msg}")
            except BadLine as exc:
                yield line, exc


class _Fields:
    def __init__(self, value: dict[str, Any]) -> None:
        self._value = value

    def string(self, name: str, *, required: bool = True) -> str:
        value = self._value.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise BadLine(f"{name} must be a non-empty string" if required else f"{name} must be a string")
        return value

    def user_id(self, name: str) -> str:
        return _user_id(self.string(name), name)

    def user_ids(self, name: str) -> tuple[str, ...]:
        value = self._value.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadLine(f"{name} must be a list of userIDs")
        return tuple(_user_id(v, name) for v in value)

    def integer(self, name: str, *, default: int | None = None) -> int:
        value = self._value.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadLine(f"{name} must be a whole number")
        return value

    def object(self, name: str) -> dict[str, Any]:
        value = self._value.get(name)
        if not isinstance(value, dict) or not value:
            raise BadLine(f"{name} must be a non-empty JSON object")
        return value

    def get(self, name: str) -> Any:
        return self._value.get(name)


def _user_id(value: str, name: str) -> str:
    # OpenIM's rule, as user_register checks it, and the gateway's length, as a login checks it: else an imported
    # user could never log in.
    if not valid_user_id(value):
        raise BadLine(f"{name}: {value!r} is not a userID a login accepts (letters, digits and _, 64 at most)")
    return value


def _user(line: Line, f: _Fields) -> User:
    # UserRegisterReq.Check: a nickname is required; the import does not make one up.
    return User(line, f.user_id("userID"), f.string("nickname"), f.string("faceURL", required=False),
                f.string("ex", required=False))  # fmt: skip


def _friendship(line: Line, f: _Fields) -> Friendship:
    friendship = Friendship(line, f.user_id("userID"), f.user_id("friendUserID"))
    if friendship.user_id == friendship.friend_user_id:
        raise BadLine("a user cannot be their own friend (OpenIM: 1301)")
    return friendship


GROUP_INFO_STRINGS = ("notification", "introduction", "faceURL", "ex")
GROUP_INFO_INTEGERS = ("needVerification", "lookMemberInfo", "applyMemberFriend")


def _group(line: Line, f: _Fields) -> Group:
    group_id = f.string("groupID")
    if any(ch.isspace() for ch in group_id):
        raise BadLine(f"groupID {group_id!r} holds white space")
    owner, admins, members = f.user_id("ownerUserID"), f.user_ids("adminUserIDs"), f.user_ids("memberUserIDs")
    everyone = [owner, *admins, *members]
    if len(set(everyone)) != len(everyone):
        # create_group refuses any repetition across its lists ("group member repeated").
        repeated = sorted({u for u in everyone if everyone.count(u) > 1})
        raise BadLine(f"{', '.join(repeated)} listed twice among the owner, admins and members")
    info: dict[str, Any] = {name: f.string(name, required=False) for name in GROUP_INFO_STRINGS}
    info |= {name: f.integer(name, default=0) for name in GROUP_INFO_INTEGERS}
    return Group(line, group_id, f.string("groupName"), owner, admins, members, info)


def _message(line: Line, f: _Fields) -> Message:
    recv_id, group_id = f.get("recvID"), f.get("groupID")
    if bool(recv_id) == bool(group_id):
        raise BadLine("a message names either recvID (a single chat) or groupID (a group), not both or neither")
    content_type = f.integer("contentType")
    if content_type not in MESSAGE_CONTENT_TYPES:
        raise BadLine(f"contentType {content_type}: OpenIM v3.8.3's send_msg takes {sorted(MESSAGE_CONTENT_TYPES)}")
    send_time = f.integer("sendTime")
    if send_time <= 0:
        raise BadLine("sendTime must be the original send time in unix milliseconds")
    return Message(
        line,
        message_id=f.string("messageID"),
        send_id=f.user_id("sendID"),
        recv_id=f.user_id("recvID") if recv_id else "",
        group_id=f.string("groupID") if group_id else "",
        send_time=send_time,
        content_type=content_type,
        content=f.object("content"),
        sender_platform_id=f.integer("senderPlatformID", default=0),
        sender_nickname=f.string("senderNickname", required=False),
        sender_face_url=f.string("senderFaceURL", required=False),
        ex=f.string("ex", required=False),
    )


PARSERS: dict[str, Callable[[Line, _Fields], Record]] = {
    USERS: _user,
    FRIENDSHIPS: _friendship,
    GROUPS: _group,
    MESSAGES: _message,
}
