"""The sandbox's in-memory OpenIM: users, tokens and their states.

Token rules follow ``openim-contract.md``: HS256 JWTs with the claims
``UserID``, ``PlatformID``, ``exp`` and ``iat`` (section 2.2); multi-login
policy 1 (a new token for platform P kicks every older token of P, other
platforms keep only their newest); force logout kicks a platform's tokens
(2.7); each new admin token leaves the older ones valid for five minutes
(section 11). Time comes from an injectable clock so tests can move it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import enum
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from .connections import Connections
from .envelope import CodeError
from .objects import ObjectStore

if TYPE_CHECKING:
    from .webhooks import WebhookSender

# The operationID of the request being handled: callbacks carry it.
OPERATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("sandbox_operation_id", default="")
# The request's setURLPrefix (the base of the URLs the upload routes answer), and where its client reaches
# the object store (MinIO's external address; here the sandbox's own, as the request reached it).
URL_PREFIX: contextvars.ContextVar[str] = contextvars.ContextVar("sandbox_url_prefix", default="")
STORAGE_ENDPOINT: contextvars.ContextVar[str] = contextvars.ContextVar("sandbox_storage_endpoint", default="")

ADMIN_PLATFORM_ID = 10
ADMIN_TOKEN_GRACE = 300.0
DAY = 86400


@contextlib.contextmanager
def _openim_secret_length() -> Iterator[None]:
    # OpenIM signs with whatever share.secret holds, 9 bytes by default
    # ("openIM123"); PyJWT warns below 32 bytes, and the sandbox must not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def sign_token(claims: Mapping[str, Any], secret: str) -> str:
    """An HS256 JWT as OpenIM signs it."""
    with _openim_secret_length():
        return jwt.encode(dict(claims), secret, algorithm="HS256")


class FakeClock:
    """A settable clock for tests: ``clock()`` is unix seconds, ``advance`` moves it."""

    def __init__(self, start: float = 1_736_841_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# model/version_log.go: the element IDs that stand for a change of the group itself (in a
# group's member log) and of the sort order (isPinned, roleLevel), not for an item.
GROUP_CHANGE_ID = ""
SORT_CHANGE_ID = "____S_O_R_T_I_D____"
SYNC_LIMIT = 200  # incrversion.syncLimit: more changes than this and the caller gets full
GROUP_OWNER, GROUP_DISMISSED = 100, 2


class VersionLog:
    """OpenIM's version log behind an incremental sync (``mgo/version_log.go`` and
    ``internal/rpc/incrversion``): an ID (a Mongo ObjectID's 24 hex digits), a version raised
    once per write, and each element's latest state. The log comes into being at version 1 on
    its first read or write. A caller whose versionID differs, whose version is 0 or ahead of the
    log's, or who missed more than 200 elements gets ``full`` and no lists; otherwise it gets each
    element changed since its version once, under its latest state."""

    def __init__(self) -> None:
        self.version_id = os.urandom(12).hex()
        self._version = 0  # 0: no document yet
        self._latest: dict[str, tuple[int, str]] = {}  # element -> (version, "insert" | "update" | "delete")

    @property
    def version(self) -> int:
        self._version = self._version or 1  # FindChangeLog creates the document on a read
        return self._version

    def change(self, item_id: str, operation: str) -> None:
        self.changes([item_id], operation)

    def changes(self, item_ids: list[str], operation: str) -> None:
        """One ``IncrVersion``: a single new version for every element of ``item_ids``."""
        self._version += 1
        for item_id in item_ids:
            self._latest.pop(item_id, None)  # writeLogBatch2 moves the element to the end
            self._latest[item_id] = (self._version, operation)

    def element_version(self, item_id: str) -> int:
        """The version at which ``item_id`` last changed (0 if never)."""
        return self._latest.get(item_id, (0, ""))[0]

    def since(self, version: int, version_id: str) -> tuple[bool, dict[str, list[str]]]:
        """``(full, {"insert": ids, "update": ids, "delete": ids})``."""
        lists: dict[str, list[str]] = {"insert": [], "update": [], "delete": []}
        current = self.version
        if version_id != self.version_id or version <= 0 or version > current:
            return True, lists
        changed = [(item_id, operation) for item_id, (at, operation) in self._latest.items() if at > version]
        if len(changed) > SYNC_LIMIT:
            return True, lists
        for item_id, operation in changed:
            lists[operation].append(item_id)
        return False, lists


class TokenState(enum.IntEnum):
    # protocol:constant/constant.go
    NORMAL = 0
    INVALID = 1
    KICKED = 2
    EXPIRED = 3


@dataclasses.dataclass
class TokenRecord:
    user_id: str
    platform_id: int
    state: TokenState = TokenState.NORMAL
    valid_until: float | None = None  # set when an admin token is rotated out


@dataclasses.dataclass(frozen=True)
class Caller:
    user_id: str
    platform_id: int
    is_admin: bool


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    secret: str = "openIM123"  # OpenIM's documented default (config/share.yml)
    admin_user_ids: tuple[str, ...] = ("imAdmin",)
    token_expire_days: int = 90
    clock: Callable[[], float] = time.time
    webhook_url: str | None = None  # webhooks.yml `url`: callbacks go to url + "/" + command
    max_connections: int = 100_000  # openim-msggateway.yml longConnSvr.websocketMaxConnNum
    friend_verify: bool = False  # openim-rpc-msg.yml friendVerify: single chat only between friends


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = self.config.clock
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, TokenRecord] = {}
        # userID -> platformID -> tokens, oldest first
        self._issued: dict[str, dict[int, list[str]]] = collections.defaultdict(dict)
        # POSTs received per path, whatever their outcome: what reached "OpenIM".
        self.calls: collections.Counter[str] = collections.Counter()
        # Chat state (sections 4-6 of the contract).
        self.groups: dict[str, dict[str, Any]] = {}  # groupID -> GroupInfo
        self.members: dict[str, dict[str, dict[str, Any]]] = {}  # groupID -> userID -> GroupMemberFullInfo
        self.messages: dict[str, list[dict[str, Any]]] = {}  # conversationID -> MsgData, seq = index + 1
        self.conversations: dict[tuple[str, str], dict[str, Any]] = {}  # (owner, conversationID) -> Conversation
        self.has_read: dict[tuple[str, str], int] = {}  # (userID, conversationID) -> hasReadSeq
        self.hidden: set[tuple[str, str, int]] = set()  # (userID, conversationID, seq) deleted for one user
        # Relations: owner -> other user -> FriendInfo / BlackInfo (contract section 3.6 of the SDK document).
        self.friends: dict[str, dict[str, dict[str, Any]]] = {}
        self.blacks: dict[str, dict[str, dict[str, Any]]] = {}
        # Friend requests by (fromUserID, toUserID), group requests by (groupID, userID): one each.
        self.friend_requests: dict[tuple[str, str], dict[str, Any]] = {}
        self.group_requests: dict[tuple[str, str], dict[str, Any]] = {}
        # The incremental-sync logs (`/friend|group|conversation/get_incremental_*`), per kind and owner.
        self.versions: dict[tuple[str, str], VersionLog] = {}
        # The msg-gateway's live WebSocket connections (connections.py).
        self.connections = Connections()
        # /third and /object (third_routes.py): FCM tokens by (account, platformID), badges, uploads.
        self.fcm_tokens: dict[tuple[str, int], dict[str, Any]] = {}
        self.app_badges: dict[str, int] = {}
        self.objects = ObjectStore(clock=self.clock)
        self._next_group = 1_000_000_000
        self.webhooks: WebhookSender | None = None  # set while the sandbox app runs
        self._webhook_url = self.config.webhook_url
        for admin in self.config.admin_user_ids:
            # internal/rpc/user/user.go creates the admin accounts at start-up.
            self.add_user(admin, nickname=admin, app_manager_level=3)

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._webhook_url = url
        if self.webhooks is not None:
            self.webhooks.url = url

    # -- users -----------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.config.admin_user_ids

    def add_user(
        self, user_id: str, *, nickname: str, face_url: str = "", ex: str = "", app_manager_level: int = 0
    ) -> None:
        self.users[user_id] = {
            "userID": user_id,
            "nickname": nickname,
            "faceURL": face_url,
            "ex": ex,
            "createTime": self.now_ms(),
            "appMangerLevel": app_manager_level,
            "globalRecvMsgOpt": 0,
        }

    # -- chat ------------------------------------------------------------------------

    @staticmethod
    def single_conversation_id(a: str, b: str, prefix: str = "si") -> str:
        low, high = sorted((a, b))
        return f"{prefix}_{low}_{high}"

    def new_group_id(self) -> str:
        while str(self._next_group) in self.groups:
            self._next_group += 1
        return str(self._next_group)

    def touch_conversation(self, owner: str, conversation_id: str, *, session_type: int, peer: str, group: str) -> None:
        """Create ``owner``'s record of a conversation if it has none (as a message send does)."""
        if (owner, conversation_id) not in self.conversations:
            self.version_log("conversation", owner).change(conversation_id, "insert")
        self.conversations.setdefault(
            (owner, conversation_id),
            {
                "ownerUserID": owner,
                "conversationID": conversation_id,
                "recvMsgOpt": 0,
                "conversationType": session_type,
                "userID": peer,
                "groupID": group,
                "isPinned": False,
                "attachedInfo": "",
                "isPrivateChat": False,
                "groupAtType": 0,
                "ex": "",
                "burnDuration": 0,
                "minSeq": 0,
                "maxSeq": 0,
                "msgDestructTime": 0,
                "latestMsgDestructTime": 0,
                "isMsgDestruct": False,
            },
        )

    def add_members(self, group_id: str, members: list[dict[str, Any]]) -> None:
        """``GroupMemberMgo.Create``: the group's member log records them inserted (one version),
        and each one's join log records the group."""
        self.members.setdefault(group_id, {}).update((m["userID"], m) for m in members)
        self.version_log("group_member", group_id).changes([m["userID"] for m in members], "insert")
        for member in members:
            self.version_log("group", member["userID"]).change(group_id, "insert")

    def remove_members(self, group_id: str, user_ids: list[str], *, whole_group: bool = False) -> None:
        """``GroupMemberMgo.Delete``: the members go and their join logs record the group deleted;
        the group's member log records them deleted, or is dropped with the whole group (a later
        sync starts from a new log)."""
        members = self.members.get(group_id, {})
        for user_id in user_ids:
            members.pop(user_id, None)
        if whole_group:
            self.versions.pop(("group_member", group_id), None)
        elif user_ids:
            self.version_log("group_member", group_id).changes(user_ids, "delete")
        for user_id in user_ids:
            self.version_log("group", user_id).change(group_id, "delete")

    def group_owner(self, group_id: str) -> str:
        """The owner's userID ("" for a group without one: TakeGroupOwner finds no document)."""
        return next((u for u, m in self.members.get(group_id, {}).items() if m["roleLevel"] == GROUP_OWNER), "")

    def dismiss(self, group_id: str, *, delete_members: bool, owner: str) -> None:
        """``groupDatabase.DismissGroup`` and the after-callback that follows it: the group is
        marked dismissed, and either every member goes or the member log records a change of the
        group. The callback lists the members left."""
        group = self.groups[group_id]
        group["status"] = GROUP_DISMISSED
        if delete_members:
            self.remove_members(group_id, list(self.members.get(group_id, {})), whole_group=True)
        else:
            self.version_log("group_member", group_id).change(GROUP_CHANGE_ID, "update")
        # Quirk: groupType is Go's string(int32): 2 arrives as the control character U+0002.
        dismissed = {"groupID": group_id, "ownerID": owner, "groupType": chr(group["groupType"])}
        self.after("callbackAfterDisMissGroupCommand", dismissed | {"membersID": list(self.members[group_id]) or None})

    def freeze_conversation(self, user_id: str, conversation_id: str) -> None:
        """``SetConversationMaxSeq``: ``user_id`` reads the conversation only up to its current last seq."""
        record = self.conversations.get((user_id, conversation_id))
        if record is not None:
            record["maxSeq"] = self.max_seq(conversation_id)
            self.version_log("conversation", user_id).change(conversation_id, "update")

    def version_log(self, kind: str, owner: str) -> VersionLog:
        """The incremental-sync log of ``kind`` for ``owner``: "friend", "group" (the groups a user
        joined) and "conversation" per user, "group_member" per group."""
        return self.versions.setdefault((kind, owner), VersionLog())

    def max_seq(self, conversation_id: str) -> int:
        return len(self.messages.get(conversation_id, []))

    async def before(self, command: str, body: dict[str, Any]) -> None:
        if self.webhooks is not None:
            await self.webhooks.before(command, body, OPERATION_ID.get())

    def after(self, command: str, body: dict[str, Any]) -> None:
        if self.webhooks is not None:
            self.webhooks.after(command, body, OPERATION_ID.get())

    # -- tokens ----------------------------------------------------------------------

    def issue_token(self, user_id: str, platform_id: int) -> tuple[str, int]:
        """Mint a token; returns it and its lifetime in seconds (get_*_token's expireTimeSeconds)."""
        now = self.clock()
        lifetime = self.config.token_expire_days * DAY
        claims = {"UserID": user_id, "PlatformID": platform_id, "exp": int(now) + lifetime, "iat": int(now) - 5}
        token = sign_token(claims, self.config.secret)
        by_platform = self._issued[user_id]
        if self.is_admin(user_id):
            for older in by_platform.get(platform_id, []):
                record = self.tokens[older]
                if record.valid_until is None:
                    record.valid_until = now + ADMIN_TOKEN_GRACE
        else:
            self._apply_multi_login_policy_1(by_platform, platform_id)
        self.tokens[token] = TokenRecord(user_id, platform_id)
        issued = by_platform.setdefault(platform_id, [])
        if token in issued:  # minted twice within one second: the same JWT
            issued.remove(token)
        issued.append(token)
        return token, lifetime

    def _apply_multi_login_policy_1(self, by_platform: dict[int, list[str]], platform_id: int) -> None:
        for platform, tokens in by_platform.items():
            keep = [] if platform == platform_id else tokens[-1:]
            for token in tokens:
                if token not in keep:
                    self.tokens[token].state = TokenState.KICKED

    def kick(self, user_id: str, platform_id: int, *, keep: str | None = None) -> None:
        """Mark the tokens of (user, platform) kicked, all but ``keep`` (InvalidateToken)."""
        for token in self._issued.get(user_id, {}).get(platform_id, []):
            if token != keep:
                self.tokens[token].state = TokenState.KICKED

    def tokens_of(self, user_id: str, platform_id: int) -> list[str]:
        return list(self._issued.get(user_id, {}).get(platform_id, []))

    def verify_token(self, token: str) -> tuple[Caller, int]:
        """The caller a token stands for and its absolute expiry, or the CodeError OpenIM gives."""
        try:
            with _openim_secret_length():
                claims = jwt.decode(
                    token,
                    self.config.secret,
                    algorithms=["HS256"],
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                )
        except jwt.InvalidSignatureError:
            raise CodeError(1505, "signature is invalid", msg="signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise CodeError(1505, "signing method is invalid", msg="signing method is invalid") from None
        except jwt.PyJWTError:
            raise CodeError(1503, f"jwt parse error, token={token}") from None
        user_id, platform_id, exp = claims.get("UserID"), claims.get("PlatformID"), claims.get("exp")
        if not isinstance(user_id, str) or not isinstance(platform_id, int) or not isinstance(exp, int):
            raise CodeError(1503, f"jwt parse error, token={token}")
        now = self.clock()
        if exp <= now:
            raise CodeError(1501)
        record = self.tokens.get(token)
        if record is None or (record.valid_until is not None and record.valid_until <= now):
            raise CodeError(1507)
        if record.state == TokenState.KICKED:
            raise CodeError(1506)
        if record.state != TokenState.NORMAL:
            raise CodeError(1505)
        return Caller(user_id, platform_id, self.is_admin(user_id)), exp
