"""Whether a user may read a conversation or act in a group.

OpenIM v3.8.3 does not check ownership on ``pull_msg_by_seq`` and the
has-read route (contract, section 10); the gateway does, from the
conversation ID's form:

* ``si_<a>_<b>`` / ``sn_<a>_<b>`` (single and notification chat, IDs sorted):
  the caller must be ``a`` or ``b``. A user ID may itself contain ``_``, so an
  ID can split into several sorted pairs; when some split names two *other*
  users who both exist in OpenIM, the ID is ambiguous and refused.
* ``sg_<groupID>``: the caller must be a member (asked of OpenIM with the
  admin token, remembered briefly).
* ``n_<conversationID>``: the notification side of a conversation, same rule.

Anything else is refused.

What is remembered of a group's members is forgotten, on every replica
(:mod:`messenger_gw.store.invalidation`), as soon as the membership may have
changed: after the gateway's own group writes (the routes with
``changes_members``) and on OpenIM's after-callbacks for kicks, quits, joins
and dismissals (:meth:`ConversationAccess.forget_on`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

from aiohttp import web

from messenger_gw.store import Invalidation, TTLCache

from .admin_token import AdminTokenManager
from .client import ArgsError, GroupIDNotFoundError, OpenIMClient, RecordNotFoundError

MEMBERSHIP_TTL = 10.0
MEMBERSHIP_MAX = 100_000
USER_EXISTS_TTL = 300.0
INVALIDATION_KIND = "group_members"  # the subject is a group ID


# OpenIM's after-callbacks that say who is in a group changed (contract, section 8.5).
def single_chat_pairs(rest: str) -> list[tuple[str, str]]:
    """Every way ``rest`` reads as ``<low>_<high>`` with ``low <= high`` and both non-empty."""
    pairs = []
    for index, char in enumerate(rest):
        if char == "_":
            low, high = rest[:index], rest[index + 1 :]
            if low and high and low <= high:
                pairs.append((low, high))
    return pairs


def single_chat_peers(user_id: str, conversation_id: str) -> set[str]:
    """Whom ``user_id`` talks to in a single chat (``si_``/``sn_``, or its ``n_`` side); nobody in any other."""
    prefix, _, rest = conversation_id.partition("_")
    if prefix == "n":
        return single_chat_peers(user_id, rest)
    if prefix not in ("si", "sn"):
        return set()
    return {high if low == user_id else low for low, high in single_chat_pairs(rest) if user_id in (low, high)}


Ticket = tuple[int, float]  # (order, monotonic time) of a question put to OpenIM


class Memberships:
    """Remembered answers to "is this user in this group?", forgotten a whole group at a time.

    Forgetting must also beat a lookup already under way, asked of OpenIM before the change and
    answered after it. Every question takes a ticket before it is asked, every drop takes one too,
    and an answer whose ticket is older than its group's last drop (or the last clear) is not kept.
    An answer lives ``ttl`` from when it was asked and a drop ``ttl`` from when it happened, so a
    drop outlives every answer it overrules; a full table of drops is a clear, never an eviction.
    """

    def __init__(self, *, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._answers: TTLCache[tuple[str, str], tuple[int, bool]] = TTLCache(max_size=max_size, ttl=ttl, clock=clock)
        self._drops: TTLCache[str, int] = TTLCache(max_size=max_size, ttl=ttl, clock=clock)
        self._order = itertools.count()
        self._cleared = -1

    def ticket(self) -> Ticket:
        return next(self._order), self._clock()

    def get(self, group_id: str, user_id: str) -> bool | None:
        entry = self._answers.get((group_id, user_id))
        if entry is None or not self._current(group_id, entry[0]):
            return None
        return entry[1]

    def put(self, group_id: str, user_id: str, member: bool, *, asked: Ticket) -> None:
        order, at = asked
        remaining = self._ttl - (self._clock() - at)
        if remaining > 0 and self._current(group_id, order):
            self._answers.put((group_id, user_id), (order, member), ttl=remaining)

    def drop(self, group_id: str) -> None:
        if len(self._drops) >= self._max_size:
            self.clear()
        self._drops.put(group_id, self.ticket()[0])

    def clear(self) -> None:
        self._cleared = self.ticket()[0]
        self._answers.clear()
        self._drops.clear()

    def _current(self, group_id: str, order: int) -> bool:
        dropped = self._drops.get(group_id)
        return order > self._cleared and (dropped is None or order > dropped)


class ConversationAccess:
    def __init__(self, openim: OpenIMClient, admin_tokens: AdminTokenManager, invalidation: Invalidation) -> None:
        self._openim = openim
        self._admin_tokens = admin_tokens
        self._invalidation = invalidation
        self._members = Memberships(ttl=MEMBERSHIP_TTL, max_size=MEMBERSHIP_MAX)
        invalidation.register(INVALIDATION_KIND, self._members)
        self._users: TTLCache[str, bool] = TTLCache(max_size=100_000, ttl=USER_EXISTS_TTL)

    async def may_read(self, user_id: str, conversation_id: str, operation_id: str) -> bool:
        prefix, _, rest = conversation_id.partition("_")
        if prefix == "n":
            return await self.may_read(user_id, rest, operation_id)
        if prefix in ("si", "sn"):
            return await self._is_party(user_id, rest, operation_id)
        if prefix == "sg":
            return bool(rest) and await self.is_member(user_id, rest, operation_id)
        return False

    async def is_member(self, user_id: str, group_id: str, operation_id: str) -> bool:
        if not group_id:  # no group: OpenIM would answer ArgsError, a fault of the client's, not OpenIM's
            return False
        cached = self._members.get(group_id, user_id)
        if cached is not None:
            return cached
        asked = self._members.ticket()

        async def members(admin: str) -> object:
            return await self._openim.call(
                "/group/get_group_members_info",
                {"groupID": group_id, "userIDs": [user_id]},
                operation_id=operation_id,
                token=admin,
            )

        try:
            data = await self._admin_tokens.call(members)
        except (ArgsError, GroupIDNotFoundError, RecordNotFoundError):
            return False  # a group OpenIM cannot look up has no members; not kept, it may be created yet
        found = isinstance(data, dict) and any(
            isinstance(m, dict) and m.get("userID") == user_id for m in data.get("members") or []
        )
        self._members.put(group_id, user_id, found, asked=asked)
        return found

    async def forget_groups(self, group_ids: Iterable[str]) -> None:
        """Forget the members of these groups here at once, then on every replica (StoreError if unsent)."""
        for group_id in group_ids:
            await self._invalidation.publish(INVALIDATION_KIND, group_id)

    async def _is_party(self, user_id: str, rest: str, operation_id: str) -> bool:
        pairs = single_chat_pairs(rest)
        if not any(user_id in pair for pair in pairs):
            return False
        others = [pair for pair in pairs if user_id not in pair]
        if not others:
            return True
        # Ambiguous only if some other reading names two users who really exist.
        exists = await self._existing({u for pair in others for u in pair}, operation_id)
        return not any(low in exists and high in exists for low, high in others)

    async def _existing(self, user_ids: set[str], operation_id: str) -> set[str]:
        unknown = [u for u in user_ids if self._users.get(u) is None]
        if unknown:
            infos = await self._admin_tokens.call(
                lambda admin: self._openim.get_users_info(admin, unknown, operation_id=operation_id)
            )
            found = {info.user_id for info in infos}
            for user in unknown:
                self._users.put(user, user in found)
        return {u for u in user_ids if self._users.get(u)}


CONVERSATION_ACCESS: web.AppKey[ConversationAccess] = web.AppKey("conversation_access", ConversationAccess)
