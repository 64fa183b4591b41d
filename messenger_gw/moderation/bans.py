"""Ban records: a banned user cannot log in, mint an imToken or pass the proxy.

The record lives at ``gw:ban:<userID>`` as JSON ``{reason, actor, at,
expiresAt}``; an expiring ban carries the store TTL too, so it ends by itself.
"""

from __future__ import annotations

import dataclasses

import orjson
from aiohttp import web

from messenger_gw import errors, keys
from messenger_gw.store import Invalidation, Store, TTLCache

INVALIDATION_KIND = "ban"
# Bounds how long a missed invalidation could let a banned user through (or keep an unbanned one out).
CACHE_TTL = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Ban:
    user_id: str
    reason: str
    actor: str
    at: int
    expires_at: int | None

    def as_json(self) -> dict[str, object]:
        return {
            "userID": self.user_id,
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at,
            "expiresAt": self.expires_at,
        }

    def encode(self) -> bytes:
        return orjson.dumps({"reason": self.reason, "actor": self.actor, "at": self.at, "expiresAt": self.expires_at})

    @classmethod
    def decode(cls, user_id: str, raw: bytes) -> Ban:
        data = orjson.loads(raw)
        return cls(user_id, data["reason"], data["actor"], data["at"], data.get("expiresAt"))


class Banned(errors.GatewayError):
    status = 403
    code = errors.BANNED

    def __init__(self, user_id: str) -> None:
        super().__init__("This account is banned", detail=f"user {user_id} is banned")


class Bans:
    """Ban records, with an in-process answer cache kept true by invalidation on ban and unban."""

    def __init__(self, store: Store, invalidation: Invalidation) -> None:
        self._store = store
        self._invalidation = invalidation
        self._cache: TTLCache[str, bool] = TTLCache(max_size=100_000, ttl=CACHE_TTL)
        invalidation.register(INVALIDATION_KIND, self._cache)

    async def get(self, user_id: str) -> Ban | None:
        raw = await self._store.get(keys.ban(user_id))
        return Ban.decode(user_id, raw) if raw is not None else None

    async def is_banned(self, user_id: str) -> bool:
        banned = self._cache.get(user_id)
        if banned is None:
            banned = await self._store.get(keys.ban(user_id)) is not None
            self._cache.put(user_id, banned)
        return banned

    async def put(self, ban: Ban, *, now: float) -> None:
        """Record the ban and tell every replica at once; an expiring ban ends by itself."""
        ttl = None if ban.expires_at is None else max(1.0, ban.expires_at - now)
        await self._store.set(keys.ban(ban.user_id), ban.encode(), ttl=ttl)
        await self._store.hset(keys.BAN_INDEX, {ban.user_id: ban.encode()})
        self._cache.put(ban.user_id, True)
        await self._invalidation.publish(INVALIDATION_KIND, ban.user_id)

    async def remove(self, user_id: str) -> bool:
        existed = await self._store.delete(keys.ban(user_id)) > 0
        await self._store.hdel(keys.BAN_INDEX, user_id)
        await self._invalidation.publish(INVALIDATION_KIND, user_id)
        return existed

    async def all(self, *, now: float) -> list[Ban]:
        """Every ban in force, oldest first; expired index entries are cleaned up on the way."""
        bans, expired = [], []
        for user_id, raw in (await self._store.hgetall(keys.BAN_INDEX)).items():
            ban = Ban.decode(user_id, raw)
            if ban.expires_at is not None and ban.expires_at <= now:
                expired.append(user_id)
            else:
                bans.append(ban)
        if expired:
            await self._store.hdel(keys.BAN_INDEX, *expired)
        return sorted(bans, key=lambda b: (b.at, b.user_id))

    async def check(self, user_id: str) -> None:
        """Raise :class:`Banned` if ``user_id`` is banned."""
        if await self.is_banned(user_id):
            raise Banned(user_id)


BANS: web.AppKey[Bans] = web.AppKey("bans", Bans)
