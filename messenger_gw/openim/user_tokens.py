"""Users' OpenIM tokens: stored per platform, reused while valid, minted once at a time.

``im:token:<userID>`` is a hash with one field per platformID holding
``{"token", "expiresAt"}``. Minting kicks the user's other tokens of that
platform (OpenIM's multi-login policy 1), so a still-valid stored token is
reused, and a mint is single-flight per (user, platform): one task per key
in this process, and a short store lock across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import orjson
from aiohttp import web

from messenger_gw import keys
from messenger_gw.store import Invalidation, Store, TTLCache

from .admin_token import AdminTokenManager
from .client import NewUser, OpenIMClient, RecordNotFoundError, RegisteredAlreadyError, TokenError

INVALIDATION_KIND = "im_token"
CACHE_TTL = 300.0
MINT_LOCK_TTL = 10.0
LOCK_POLL_INTERVAL = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class StoredToken:
    token: str = dataclasses.field(repr=False)
    expires_at: int

    def encode(self) -> bytes:
        return orjson.dumps({"token": self.token, "expiresAt": self.expires_at})

    @classmethod
    def decode(cls, raw: bytes) -> StoredToken:
        data = orjson.loads(raw)
        return cls(data["token"], data["expiresAt"])


class ImTokens:
    def __init__(
        self,
        store: Store,
        openim: OpenIMClient,
        admin_tokens: AdminTokenManager,
        invalidation: Invalidation,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._openim = openim
        self._admin_tokens = admin_tokens
        self._invalidation = invalidation
        self._clock = clock
        self._minting: dict[tuple[str, int], asyncio.Task[StoredToken]] = {}
        # userID -> platformID -> token: the warm path reads no store for it.
        self._cache: TTLCache[str, dict[int, StoredToken]] = TTLCache(max_size=100_000, ttl=CACHE_TTL)
        invalidation.register(INVALIDATION_KIND, self._cache)

    async def resolve(self, user_id: str, platform_id: int, *, operation_id: str) -> StoredToken:
        """The token to call OpenIM with for (user, platform): cached, stored, or minted once."""
        token = await self.current(user_id, platform_id)
        if token is None:
            token = await self.mint(user_id, platform_id, nickname=user_id, operation_id=operation_id)
            self._remember(user_id, platform_id, token)
        return token

    async def current(self, user_id: str, platform_id: int) -> StoredToken | None:
        """The unexpired token stored for (user, platform), from this process's cache when it holds one;
        None when none is stored. Never mints: what an imToken a client presents is compared with."""
        by_platform = self._cache.get(user_id)
        token = by_platform.get(platform_id) if by_platform is not None else None
        if token is not None and token.expires_at > self._clock():
            return token
        token = await self.stored(user_id, platform_id)
        if token is not None:
            self._remember(user_id, platform_id, token)
        return token

    async def replace(self, user_id: str, platform_id: int, failed: str, *, operation_id: str) -> StoredToken:
        """OpenIM refused ``failed``: drop it everywhere and mint a new token (once, however many ask)."""
        stored = await self.stored(user_id, platform_id)
        if stored is not None and stored.token != failed:
            self._remember(user_id, platform_id, stored)
            return stored  # already replaced by another request or replica
        if stored is not None:
            await self._store.hdel(keys.im_token(user_id), str(platform_id))
        await self._invalidation.publish(INVALIDATION_KIND, user_id)
        token = await self.mint(user_id, platform_id, nickname=user_id, operation_id=operation_id, stale=stored)
        self._remember(user_id, platform_id, token)
        return token

    def _remember(self, user_id: str, platform_id: int, token: StoredToken) -> None:
        by_platform = dict(self._cache.get(user_id) or {})
        by_platform[platform_id] = token
        self._cache.put(user_id, by_platform, ttl=max(1.0, token.expires_at - self._clock()))

    async def stored(self, user_id: str, platform_id: int) -> StoredToken | None:
        raw = await self._store.hget(keys.im_token(user_id), str(platform_id))
        if raw is None:
            return None
        token = StoredToken.decode(raw)
        return token if token.expires_at > self._clock() else None

    async def obtain(
        self, user_id: str, platform_id: int, *, nickname: str, min_remaining: float, operation_id: str
    ) -> StoredToken:
        """A token for (user, platform): the stored one if OpenIM still accepts it, else a new one."""
        existing = await self.stored(user_id, platform_id)
        if existing is not None and existing.expires_at - self._clock() >= min_remaining:
            try:
                await self._openim.parse_token(existing.token, operation_id=operation_id)
                return existing
            except TokenError:
                pass  # kicked or unknown to OpenIM: replace it
        return await self.mint(user_id, platform_id, nickname=nickname, operation_id=operation_id, stale=existing)

    async def mint(
        self, user_id: str, platform_id: int, *, nickname: str, operation_id: str, stale: StoredToken | None = None
    ) -> StoredToken:
        """A new token, unless another mint for the same key finishes first; concurrent callers share it."""
        key = (user_id, platform_id)
        task = self._minting.get(key)
        if task is None:
            task = asyncio.create_task(self._mint_across_replicas(user_id, platform_id, nickname, operation_id, stale))
            self._minting[key] = task
            task.add_done_callback(lambda _: self._minting.pop(key, None))
        return await asyncio.shield(task)

    async def stored_platforms(self, user_id: str) -> list[int]:
        """The platforms the user holds a stored token for."""
        return sorted(int(p) for p in await self._store.hgetall(keys.im_token(user_id)) if p.isdigit())

    async def forget(self, user_id: str) -> None:
        """Drop every stored token of the user (ban, force logout)."""
        await self._store.delete(keys.im_token(user_id))
        await self._invalidation.publish(INVALIDATION_KIND, user_id)

    async def drop(self, user_id: str, platform_id: int) -> None:
        """Drop the user's stored token for one platform (logout): from now on the gateway refuses it."""
        await self._store.hdel(keys.im_token(user_id), str(platform_id))
        await self._invalidation.publish(INVALIDATION_KIND, user_id)

    async def _mint_across_replicas(
        self, user_id: str, platform_id: int, nickname: str, operation_id: str, stale: StoredToken | None
    ) -> StoredToken:
        lock = keys.im_token_mint_lock(user_id, platform_id)
        while not await self._store.set_if_absent(lock, operation_id.encode(), ttl=MINT_LOCK_TTL):
            # Another replica is minting: its token will do, once it lands.
            await asyncio.sleep(LOCK_POLL_INTERVAL)
            fresh = await self.stored(user_id, platform_id)
            if fresh is not None and fresh != stale:
                return fresh
        try:
            fresh = await self.stored(user_id, platform_id)
            if fresh is not None and fresh != stale:
                return fresh  # minted by another replica between our read and the lock
            return await self._mint(user_id, platform_id, nickname, operation_id)
        finally:
            await self._store.delete(lock)

    async def _mint(self, user_id: str, platform_id: int, nickname: str, operation_id: str) -> StoredToken:
        async def get_user_token(admin: str) -> StoredToken:
            issued = await self._openim.get_user_token(admin, user_id, platform_id, operation_id=operation_id)
            return StoredToken(issued.token, int(self._clock()) + issued.expires_in)

        try:
            token = await self._admin_tokens.call(get_user_token)
        except RecordNotFoundError:
            # Not registered yet: register and mint again. 1102 means someone registered
            # the user meanwhile (another replica, the user-service): the goal either way.
            with contextlib.suppress(RegisteredAlreadyError):
                await self._admin_tokens.call(
                    lambda admin: self._openim.user_register(
                        admin, [NewUser(user_id, nickname)], operation_id=operation_id
                    )
                )
            token = await self._admin_tokens.call(get_user_token)
        await self._store.hset(
            keys.im_token(user_id),
            {str(platform_id): token.encode()},
            ttl=max(1, token.expires_at - int(self._clock())),
        )
        await self._invalidation.publish(INVALIDATION_KIND, user_id)
        return token


IM_TOKENS: web.AppKey[ImTokens] = web.AppKey("im_tokens", ImTokens)
