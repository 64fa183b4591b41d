"""OpenIM's webhook bodies for every callbackCommand (contract sections 8.4 to 8.6), well formed or not.

A well-formed body has every field OpenIM v3.8.3 sends for its command, each of the type OpenIM
gives it; :func:`deliveries` also makes the ways one can go wrong on the way: a field of another
type, a missing or mismatched callbackCommand, a body that is not an object or not JSON, one over
the size limit, a wrong secret.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import strategies as st

USER = st.sampled_from(["u1", "u2", "imAdmin", "", "user_with_underscores"]) | st.text(max_size=12)
TEXT = st.text(max_size=40)
MS = st.integers(0, 2**45)
SMALL = st.integers(0, 5000)
USERS = st.lists(USER, max_size=4)


def _content(content_type: int) -> st.SearchStrategy[str]:
    if content_type == 101:
        return st.builds(lambda t: orjson.dumps({"content": t}).decode(), TEXT)
    if content_type == 106:
        return st.builds(lambda t, ids: orjson.dumps({"text": t, "atUserList": ids}).decode(), TEXT, USERS)
    return st.just("") | st.builds(lambda v: orjson.dumps(v).decode(), st.dictionaries(st.text(max_size=6), TEXT))


@st.composite
def _message(draw: st.DrawFn, *, group: bool) -> dict[str, Any]:
    content_type = draw(st.sampled_from([101, 102, 103, 104, 105, 106, 110, 113, 1201, 1501, 1504, 2101]))
    body = {
        "sendID": draw(USER), "serverMsgID": draw(TEXT), "clientMsgID": draw(TEXT), "operationID": draw(TEXT),
        "senderPlatformID": draw(st.integers(0, 12)), "senderNickname": draw(TEXT),
        "sessionType": draw(st.sampled_from([1, 3, 4])),
        "msgFrom": draw(st.sampled_from([100, 200])), "contentType": content_type, "status": draw(st.integers(0, 3)),
        "sendTime": draw(MS), "createTime": draw(MS), "content": draw(_content(content_type)), "seq": 0,
        "atUserList": draw(st.none() | USERS), "faceURL": draw(TEXT), "ex": draw(TEXT),
    }  # fmt: skip
    return body | ({"groupID": draw(TEXT)} if group else {"recvID": draw(USER)})


def _group_info() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "groupID": TEXT, "groupName": TEXT, "notification": TEXT, "introduction": TEXT, "faceURL": TEXT,
        "ownerUserID": USER, "createTime": MS, "memberCount": SMALL, "ex": TEXT, "status": st.integers(0, 3),
        "creatorUserID": USER, "groupType": st.just(2), "needVerification": st.integers(0, 2),
        "lookMemberInfo": st.integers(0, 1), "applyMemberFriend": st.integers(0, 1),
        "notificationUpdateTime": MS, "notificationUserID": USER,
    }  # fmt: skip


MEMBERS = st.lists(st.fixed_dictionaries({"userID": USER, "roleLevel": st.sampled_from([20, 60, 100])}), max_size=4)
GROUP_TYPE_CHAR = st.integers(0, 3).map(chr)  # Go's string(int32): "\u0002" for 2
USER_INFO = st.fixed_dictionaries(
    {"userID": USER, "nickname": TEXT, "faceURL": TEXT, "ex": TEXT, "createTime": MS, "appMangerLevel": SMALL,
     "globalRecvMsgOpt": st.integers(0, 2)}
)  # fmt: skip
PUSH = {
    "operationID": TEXT, "platformID": st.integers(1, 12), "platform": TEXT, "userIDList": USERS, "clientMsgID": TEXT,
    "sendID": USER, "groupID": TEXT, "contentType": SMALL, "sessionType": st.sampled_from([1, 3, 4]),
    "atUserIDList": USERS, "content": TEXT,
}  # fmt: skip
FRIEND = {"fromUserID": USER, "toUserID": USER, "reqMsg": TEXT, "ex": TEXT}


def _fields(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields)


# Every command the server sends (contract 8.4), with the body's fields in OpenIM's order (8.5, 8.6).
TEMPLATES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "callbackBeforeSendSingleMsgCommand": _message(group=False),
    "callbackAfterSendSingleMsgCommand": _message(group=False),
    "callbackBeforeSendGroupMsgCommand": _message(group=True),
    "callbackAfterSendGroupMsgCommand": _message(group=True),
    "callbackBeforeMsgModifyCommand": _message(group=False) | _message(group=True),
    "callbackAfterSingleMsgReadCommand": _fields(
        conversationID=TEXT, userID=USER, Seqs=st.lists(MS, max_size=3), contentType=SMALL
    ),
    "callbackAfterGroupMsgReadCommand": _fields(sendID=USER, receiveID=USER, unreadMsgNum=SMALL, contentType=SMALL),
    "callbackBeforeAfterMsgCommand": _fields(conversationID=TEXT, seq=MS, userID=USER),
    "callbackAfterUserOnlineCommand": _fields(
        operationID=TEXT,
        platformID=st.integers(1, 12),
        platform=TEXT,
        userID=USER,
        seq=MS,
        isAppBackground=st.booleans(),
        connID=st.just(""),
    ),
    "callbackAfterUserOfflineCommand": _fields(
        operationID=TEXT, platformID=st.integers(1, 12), platform=TEXT, userID=USER, seq=MS, connID=st.just("")
    ),
    "callbackAfterUserKickOffCommand": _fields(
        operationID=TEXT, platformID=st.integers(1, 12), platform=TEXT, userID=USER, seq=MS, connID=st.just("")
    ),
    "callbackBeforeOfflinePushCommand": _fields(**PUSH),
    "callbackBeforeOnlinePushCommand": _fields(**PUSH),
    "callbackBeforeGroupOnlinePushCommand": _fields(**{k: v for k, v in PUSH.items() if k != "userIDList"}, seq=MS),
    "callbackBeforeUserRegisterCommand": _fields(users=st.lists(USER_INFO, max_size=3)),
    "callbackAfterUserRegisterCommand": _fields(users=st.lists(USER_INFO, max_size=3)),
    "callbackBeforeUpdateUserInfoCommand": _fields(userID=USER, nickName=TEXT, faceURL=TEXT, ex=st.none()),
    "callbackAfterUpdateUserInfoCommand": _fields(userID=USER, nickName=TEXT, faceURL=TEXT),
    "callbackBeforeUpdateUserInfoExCommand": _fields(userID=USER, nickName=TEXT, faceURL=TEXT, ex=st.none() | TEXT),
    "callbackAfterUpdateUserInfoExCommand": _fields(userID=USER, nickName=TEXT, faceURL=TEXT),
    "callbackBeforeCreateGroupCommand": _fields(operationID=TEXT, **_group_info(), initMemberList=MEMBERS),
    "callbackAfterCreateGroupCommand": _fields(**_group_info(), initMemberList=MEMBERS),
    "callbackBeforeMembersJoinGroupCommand": _fields(
        groupID=TEXT, memberList=st.lists(_fields(userID=USER, ex=TEXT), max_size=3), groupEx=TEXT
    ),
    "callbackBeforeSetGroupMemberInfoCommand": _fields(
        groupID=TEXT, userID=USER, nickName=TEXT, faceURL=TEXT, roleLevel=st.sampled_from([20, 60, 100]), ex=TEXT
    ),
    "callbackAfterSetGroupMemberInfoCommand": _fields(
        groupID=TEXT, userID=USER, nickName=TEXT, faceURL=TEXT, roleLevel=st.sampled_from([20, 60, 100]), ex=TEXT
    ),
    "callbackAfterQuitGroupCommand": _fields(groupID=TEXT, userID=USER),
    "callbackAfterKickGroupCommand": _fields(groupID=TEXT, kickedUserIDs=USERS, reason=TEXT),
    "callbackAfterDisMissGroupCommand": _fields(
        groupID=TEXT, ownerID=USER, groupType=GROUP_TYPE_CHAR, membersID=st.none() | USERS
    ),
    "callbackBeforeJoinGroupCommand": _fields(
        groupID=TEXT, groupType=GROUP_TYPE_CHAR, applyID=USER, reqMessage=TEXT, ex=TEXT
    ),
    "callbackAfterJoinGroupCommand": _fields(
        operationID=TEXT, groupID=TEXT, reqMessage=TEXT, joinSource=st.integers(1, 4), inviterUserID=USER
    ),
    "callbackAfterTransferGroupOwnerCommand": _fields(groupID=TEXT, oldOwnerUserID=USER, newOwnerUserID=USER),
    "callbackBeforeInviteJoinGroupCommand": _fields(operationID=TEXT, groupID=TEXT, reason=TEXT, invitedUserIDs=USERS),
    "callbackBeforeSetGroupInfoCommand": _fields(
        operationID=TEXT, groupID=TEXT, groupName=TEXT, notification=TEXT, introduction=TEXT, faceURL=TEXT, ex=TEXT
    ),
    "callbackAfterSetGroupInfoCommand": _fields(
        groupID=TEXT, groupName=TEXT, notification=TEXT, introduction=TEXT, faceURL=TEXT, ex=TEXT
    ),
    "callbackBeforeSetGroupInfoExCommand": _fields(
        operationID=TEXT, groupID=TEXT, groupName=TEXT, notification=TEXT, introduction=TEXT, faceURL=TEXT, ex=TEXT
    ),
    "callbackAfterSetGroupInfoExCommand": _fields(
        groupID=TEXT, groupName=TEXT, notification=TEXT, introduction=TEXT, faceURL=TEXT, ex=TEXT
    ),
    "callbackBeforeAddFriendCommand": _fields(**FRIEND),
    "callbackAfterAddFriendCommand": _fields(**FRIEND),
    "callbackBeforeAddFriendAgreeCommand": _fields(
        fromUserID=USER, blackUserID=USER, HandleResult=st.integers(-1, 1), HandleMsg=TEXT
    ),
    "callbackAfterAddFriendAgreeCommand": _fields(
        fromUserID=USER, blackUserID=USER, HandleResult=st.integers(-1, 1), HandleMsg=TEXT
    ),
    "callbackAfterDeleteFriendCommand": _fields(ownerUserID=USER, friendUserID=USER),
    "callbackBeforeImportFriendsCommand": _fields(ownerUserID=USER, friendUserIDs=USERS),
    "callbackAfterImportFriendsCommand": _fields(ownerUserID=USER, friendUserIDs=USERS),
    "callbackBeforeSetFriendRemarkCommand": _fields(ownerUserID=USER, friendUserID=USER, remark=TEXT),
    "callbackAfterSetFriendRemarkCommand": _fields(ownerUserID=USER, friendUserID=USER, remark=TEXT),
    "callbackBeforeAddBlackCommand": _fields(ownerUserID=USER, blackUserID=USER),
    "callbackAfterRemoveBlackCommand": _fields(ownerUserID=USER, blackUserID=USER),
    # A command this gateway does not know (a newer OpenIM's): an after-event kept as it came.
    "callbackAfterSomethingNewCommand": _fields(userID=USER, anything=st.dictionaries(st.text(max_size=5), TEXT)),
}
BEFORE = frozenset(c for c in TEMPLATES if c.startswith("callbackBefore") and c != "callbackBeforeAfterMsgCommand")


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One POST as OpenIM makes it (or as it goes wrong): what was sent, and whether OpenIM could have sent it."""

    command: str
    raw: bytes
    operation_id: str
    right_secret: bool
    well_formed: bool
    fault: str  # "none", or what was done to the body or the URL

    @property
    def unevaluable(self) -> bool:
        """No rule can be applied to it: the gateway cannot tell what OpenIM asks."""
        return self.fault in ("secret", "large", "json", "shape") or (self.fault == "command" and not self.well_formed)


def encode(body: Any) -> bytes:
    """As Go's ``json.Encoder``: ``<``, ``>`` and ``&`` escaped, a trailing newline."""
    raw = orjson.dumps(body)
    return raw.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026") + b"\n"


ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what JSON encoders write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def deliveries(draw: st.DrawFn, command: str, max_body_bytes: int) -> Delivery:
    body: dict[str, Any] = {"callbackCommand": command} | draw(TEMPLATES[command])
    operation_id = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24))
    fault = draw(st.sampled_from(["none"] * 6 + ["retyped", "extra", "command", "shape", "json", "large", "secret"]))
    if fault == "retyped" and len(body) > 1:
        name = draw(st.sampled_from(sorted(set(body) - {"callbackCommand"})))
        body[name] = draw(ANY_JSON)
    elif fault == "extra":
        names = st.text(min_size=1, max_size=8).filter(lambda name: name not in body)
        body |= draw(st.dictionaries(names, ANY_JSON, min_size=1, max_size=3))
    elif fault == "command":
        choice = draw(st.sampled_from(["missing", "other", "typed"]))
        if choice == "missing":
            del body["callbackCommand"]
        else:
            body["callbackCommand"] = draw(st.sampled_from(sorted(TEMPLATES))) if choice == "other" else draw(ANY_JSON)
    raw = encode(body)
    if fault == "shape":
        not_an_object = st.lists(ANY_JSON, max_size=3) | st.none() | st.text(max_size=8) | st.integers(-(2**63), 2**63)
        raw = encode(draw(not_an_object))
    elif fault == "json":
        raw = draw(st.binary(max_size=40) | st.just(raw[: max(1, len(raw) // 2)]))
    elif fault == "large":
        raw = encode(body | {"ex": "x" * (max_body_bytes + 1)})
    well_formed = fault in ("none", "extra") or (fault == "command" and body.get("callbackCommand") == command)
    return Delivery(command, raw, operation_id, fault != "secret", well_formed, fault)
