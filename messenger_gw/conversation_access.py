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
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from .admin_token import AdminTokenManager
from .cache import TTLCache
from .openim import OpenIMClient

MEMBERSHIP_TTL = 10.0
USER_EXISTS_TTL = 300.0


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


class ConversationAccess:
    def __init__(self, openim: OpenIMClient, admin_tokens: AdminTokenManager) -> None:
        self._openim = openim
        self._admin_tokens = admin_tokens
        self._members: TTLCache[tuple[str, str], bool] = TTLCache(max_size=100_000, ttl=MEMBERSHIP_TTL)
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
        cached = self._members.get((group_id, user_id))
        if cached is not None:
            return cached

        async def members(admin: str) -> object:
            return await self._openim.call(
                "/group/get_group_members_info",
                {"groupID": group_id, "userIDs": [user_id]},
                operation_id=operation_id,
                token=admin,
            )

        data = await self._admin_tokens.call(members)
        found = isinstance(data, dict) and any(
            isinstance(m, dict) and m.get("userID") == user_id for m in data.get("members") or []
        )
        self._members.put((group_id, user_id), found)
        return found

    def forget_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        """Drop remembered memberships (the caller just kicked, quit or dismissed)."""
        for user_id in user_ids:
            self._members.drop((group_id, user_id))

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
