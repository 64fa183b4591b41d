"""What a client may ask of OpenIM's msg-gateway: the checks the guard runs on every request frame.

OpenIM v3.8.3 compares only the envelope's ``sendID`` with the connection's user and trusts the
protobuf inside (``openim-route-surface.md`` section 1, item 3). The guard decodes the protobuf of
each request it allows and holds it to the caller:

* an allowlist of ``reqIdentifier``\\ s (what the SDK sends, and the harmless rest of v3.8.3's
  requests); 1004 ``SendSignalMsg`` is not on it (v3.8.3 cannot serve it);
* ``SendMsg``: ``MsgData.sendID`` and ``senderPlatformID`` are the caller's (an admin ``sendID``
  skips OpenIM's blacklist, friend and group checks and its before-send callback), ``msgFrom`` a
  user's (100), a content type the SDK sends (nothing in OpenIM's notification range 1000-5000,
  which skips the same checks), a single (1) or group (3) chat, a group only for its members;
  then the moderation the before-send callbacks apply (:class:`~messenger_gw.moderation.MessageRules`:
  bans and banned words) and the caller's ``send`` rate bucket, the one ``/im`` takes from;
* the pulls and seq reads (1001, 1002, 1005, 1006, 1007) and the background status (2004) only
  for the caller's own ``userID``, and only of conversations the caller is party to (the rule of
  ``/im``: :class:`~messenger_gw.openim.ConversationAccess`).

A refusal carries OpenIM's errCode 1002 (``NoPermissionError``) for what the caller may not do,
the moderation errCode (``WEBHOOK_BLOCK_ERRCODE``, as the before-send callback answers) for what
moderation refuses, and 500 when a membership cannot be asked of OpenIM; its ``reason`` is a
bounded metric label (:data:`REASONS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar, cast

from google.protobuf.message import DecodeError, Message

from messenger_gw.moderation import BLOCK_MESSAGES, MessageRules
from messenger_gw.openim import ConversationAccess, OpenIMError
from messenger_gw.protocol import msg_pb2, sdkws_pb2
from messenger_gw.store import StoreError

from . import frames
from .frames import Request

USER_MSG_FROM = 100  # constant.UserMsgType; 200 is the system's
SINGLE_CHAT, GROUP_CHAT = 1, 3  # constant.SingleChatType, ReadGroupChatType
# What @openim/client-sdk sends: sendMessage's content types (text, picture, sound, video, file,
# @, merger, card, location, custom, quote, face) and changeInputStates' typing (113).
CLIENT_CONTENT_TYPES = frozenset({101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 113, 114, 115})

REASONS = (
    "envelope",  # not a request OpenIM could decode (the connection is closed)
    "too_large",  # over OpenIM's read limit of 51,200 bytes
    "req_identifier",  # not on the allowlist
    "undecodable",  # the protobuf in data does not parse
    "sender",  # sendID or senderPlatformID (envelope or message) not the caller's
    "msg_from",
    "content_type",
    "session_type",
    "not_member",  # a group message from someone not in the group
    "user",  # a pull, seq read or status for another userID
    "not_party",  # a conversation the caller is not party to
    "banned",
    "banned_word",
    "rate",
    "unavailable",  # a rule that could not be evaluated (the store or OpenIM failing)
)


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    err_code: int
    err_msg: str


def _denied(reason: str) -> Refusal:
    return Refusal(reason, frames.NO_PERMISSION, frames.ERR_MSGS[frames.NO_PERMISSION])


DENIED = {reason: _denied(reason) for reason in REASONS}
UNAVAILABLE = Refusal("unavailable", frames.SERVER_INTERNAL_ERROR, frames.ERR_MSGS[frames.SERVER_INTERNAL_ERROR])


class SendRate(Protocol):
    """The per-user rate buckets (``moderation.RateLimits``): None when a token was taken, else the
    seconds until one will be there; a store failure under a closed policy raises ``StoreError``."""

    async def check(self, user_id: str, rate_class: str) -> float | None: ...


Check = Callable[["FramePolicy", str, int, Request], Awaitable[Refusal | None]]


class FramePolicy:
    def __init__(
        self,
        access: ConversationAccess,
        rules: MessageRules,
        rate: SendRate | None,
        *,
        block_errcode: int,
        fail_open: bool,
    ) -> None:
        self._access = access
        self._rules = rules
        self._rate = rate
        self._fail_open = fail_open  # WEBHOOK_FAIL_POLICY: the moderation rules fail as the callbacks do (the
        # send bucket as RATE_LIMIT_FAIL_POLICY says: its check raises only when that is closed)
        self._blocked = {reason: Refusal(reason, block_errcode, text) for reason, text in BLOCK_MESSAGES.items()}

    def check(self, user_id: str, platform_id: int, request: Request) -> Awaitable[Refusal | None]:
        """To await: None when the request may reach OpenIM, else why not and how to answer it.

        A plain function handing over the check's own coroutine: one coroutine less per frame.
        """
        if request.send_id != user_id:
            return _at_once(DENIED["sender"])  # OpenIM would close the connection; the guard answers
        check = CHECKS.get(request.req_identifier)
        if check is None:
            return _at_once(DENIED["req_identifier"])
        return check(self, user_id, platform_id, request)

    async def _send_msg(self, user_id: str, platform_id: int, request: Request) -> Refusal | None:
        msg = _parse(sdkws_pb2.MsgData, request.data)
        if msg is None:
            return DENIED["undecodable"]
        if msg.sendID != user_id or msg.senderPlatformID != platform_id:
            return DENIED["sender"]
        if msg.msgFrom != USER_MSG_FROM:
            return DENIED["msg_from"]
        if msg.contentType not in CLIENT_CONTENT_TYPES:
            return DENIED["content_type"]
        if msg.sessionType == GROUP_CHAT:
            try:
                if not await self._access.is_member(user_id, msg.groupID, request.operation_id):
                    return DENIED["not_member"]
            except OpenIMError:
                return UNAVAILABLE
        elif msg.sessionType != SINGLE_CHAT:
            return DENIED["session_type"]
        try:
            reason = await self._rules.refusal(user_id, msg.contentType, msg.content.decode(errors="replace"))
        except StoreError:
            reason = None if self._fail_open else "unavailable"
        if reason is None and self._rate is not None:
            try:
                if await self._rate.check(user_id, "send") is not None:
                    reason = "rate"
            except StoreError:  # raised only when RATE_LIMIT_FAIL_POLICY is closed, as /im answers 503 then
                reason = "unavailable"
        return None if reason is None else self._blocked[reason]

    async def _parties(self, user_id: str, conversation_ids: Iterable[str], operation_id: str) -> Refusal | None:
        try:
            for conversation_id in dict.fromkeys(conversation_ids):
                if not await self._access.may_read(user_id, conversation_id, operation_id):
                    return DENIED["not_party"]
        except OpenIMError:
            return UNAVAILABLE
        return None

    async def _anything(self, user_id: str, platform_id: int, request: Request) -> Refusal | None:
        """A request that acts on nothing but the connection itself (logout)."""
        return None


async def _at_once(refusal: Refusal) -> Refusal:
    return refusal


M = TypeVar("M", bound=Message)


def _parse(kind: type[M], data: bytes) -> M | None:
    try:
        return kind.FromString(data)
    except DecodeError:
        return None


class _AboutAUser(Protocol):
    @property
    def userID(self) -> str: ...


def _own(message: type[M], conversations: Callable[[M], Iterable[str]] = lambda _: ()) -> Check:
    """The check of a request about the caller's own data: its ``userID`` the caller's, and each of its
    ``conversations`` one the caller is party to."""

    async def check(policy: FramePolicy, user_id: str, platform_id: int, request: Request) -> Refusal | None:
        wanted = _parse(message, request.data)
        if wanted is None:
            return DENIED["undecodable"]
        if cast(_AboutAUser, wanted).userID != user_id:
            return DENIED["user"]
        return await policy._parties(user_id, conversations(wanted), request.operation_id)

    return check


def _decodable(message: type[Message]) -> Check:
    """The check of a request that acts on nothing but the connection: only that OpenIM can read it."""

    async def check(policy: FramePolicy, user_id: str, platform_id: int, request: Request) -> Refusal | None:
        return DENIED["undecodable"] if _parse(message, request.data) is None else None

    return check


CHECKS: dict[int, Check] = {
    frames.SEND_MSG: FramePolicy._send_msg,
    frames.GET_NEWEST_SEQ: _own(sdkws_pb2.GetMaxSeqReq),
    frames.PULL_BY_SEQ_RANGES: _own(sdkws_pb2.PullMessageBySeqsReq, lambda m: [r.conversationID for r in m.seqRanges]),
    frames.PULL_MSG: _own(msg_pb2.GetSeqMessageReq, lambda m: [c.conversationID for c in m.conversations]),
    # No conversationIDs: every conversation of the userID, the caller's own.
    frames.GET_CONV_MAX_READ_SEQ: _own(msg_pb2.GetConversationsHasReadAndMaxSeqReq, lambda m: m.conversationIDs),
    frames.PULL_CONV_LAST_MESSAGE: _own(msg_pb2.GetLastMessageReq, lambda m: m.conversationIDs),
    frames.LOGOUT: FramePolicy._anything,
    frames.SET_BACKGROUND_STATUS: _own(sdkws_pb2.SetAppBackgroundStatusReq),
    frames.SUB_USER_ONLINE_STATUS: _decodable(sdkws_pb2.SubUserOnlineStatus),
}
