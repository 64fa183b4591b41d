"""Client sessions from the handshake: the signing key, the platform, and the user once logged in.

A session lives in the store under ``gw:session:{<id>}`` with a TTL, and in a
small in-process cache so a signed request needs no store read for it. Its
nonces live beside it (same hash tag) for the signature window.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from messenger_gw import keys
from messenger_gw.store import Invalidation, SetIfAbsentCoalescer, Store, TTLCache

from .handshake import b64url_decode, b64url_encode, derive_session_key, public_key_text
from .signatures import MAX_CLOCK_SKEW

INVALIDATION_KIND = "session"
# A nonce is remembered while a signature carrying it could still pass the
# created-time check: created may lie up to MAX_CLOCK_SKEW on either side.
NONCE_TTL = 2 * MAX_CLOCK_SKEW + 5
SESSION_ID_BYTES = 16
CACHE_TTL = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    id: str
    key: bytes = dataclasses.field(repr=False)
    platform_id: int
    user_id: str | None
    created_at: int
    expires_at: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "key": b64url_encode(self.key),
                "platformID": self.platform_id,
                "userID": self.user_id,
                "createdAt": self.created_at,
                "expiresAt": self.expires_at,
            }
        )

    @classmethod
    def decode(cls, session_id: str, raw: bytes) -> Session:
        data = orjson.loads(raw)
        return cls(
            id=session_id,
            key=b64url_decode(data["key"]),
            platform_id=data["platformID"],
            user_id=data["userID"],
            created_at=data["createdAt"],
            expires_at=data["expiresAt"],
        )


_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def looks_like_session_id(value: str) -> bool:
    return _SESSION_ID.fullmatch(value) is not None


class Sessions:
    def __init__(
        self,
        store: Store,
        invalidation: Invalidation,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
        cache_size: int = 100_000,
    ) -> None:
        self._store = store
        self._invalidation = invalidation
        self._ttl = ttl
        self._clock = clock
        self._cache: TTLCache[str, Session] = TTLCache(max_size=cache_size, ttl=CACHE_TTL)
        invalidation.register(INVALIDATION_KIND, self._cache)
        self._nonces = SetIfAbsentCoalescer(store, value=b"", ttl=NONCE_TTL)

    async def create(self, platform_id: int, client_key: X25519PublicKey) -> tuple[Session, str]:
        """A new anonymous session and the server's public key for the client."""
        session_id = b64url_encode(os.urandom(SESSION_ID_BYTES))
        server_key = X25519PrivateKey.generate()
        now = int(self._clock())
        session = Session(
            id=session_id,
            key=derive_session_key(server_key, client_key, session_id),
            platform_id=platform_id,
            user_id=None,
            created_at=now,
            expires_at=now + int(self._ttl),
        )
        await self._store.set(keys.session(session_id), session.encode(), ttl=self._ttl)
        return session, public_key_text(server_key)

    async def get(self, session_id: str) -> Session | None:
        session = self._cache.get(session_id)
        if session is not None:
            if session.expires_at > self._clock():
                return session
            self._cache.drop(session_id)
            return None
        if not looks_like_session_id(session_id):
            return None
        raw = await self._store.get(keys.session(session_id))
        if raw is None:
            return None
        session = Session.decode(session_id, raw)
        remaining = session.expires_at - self._clock()
        if remaining <= 0:
            return None
        # Cached from the store read only, not refreshed on hits: the cache's own deadline
        # is what bounds how long a missed invalidation can last.
        self._cache.put(session_id, session, ttl=remaining)
        return session

    def claim_nonce(self, session_id: str, nonce: str) -> Awaitable[bool]:
        """True the first time ``nonce`` is seen for this session within the signature window.

        The coalescer's own awaitable, not a coroutine around it: one frame fewer for the wait.
        """
        return self._nonces.claim(keys.nonce(session_id, nonce))

    async def bind(self, session: Session, user_id: str) -> Session:
        """Tie an anonymous session to the user who logged in on it."""
        bound = dataclasses.replace(session, user_id=user_id)
        remaining = bound.expires_at - self._clock()
        await self._store.set(keys.session(bound.id), bound.encode(), ttl=max(remaining, 1))
        await self._store.hset(keys.user_sessions(user_id), {bound.id: str(bound.expires_at).encode()}, ttl=self._ttl)
        await self._invalidation.publish(INVALIDATION_KIND, bound.id)
        return bound

    async def revoke(self, session: Session) -> None:
        await self._store.delete(keys.session(session.id))
        if session.user_id is not None:
            await self._store.hdel(keys.user_sessions(session.user_id), session.id)
        await self._invalidation.publish(INVALIDATION_KIND, session.id)

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every session bound to ``user_id``; the number revoked."""
        session_ids = list(await self._store.hgetall(keys.user_sessions(user_id)))
        for session_id in session_ids:
            await self._store.delete(keys.session(session_id))
            await self._invalidation.publish(INVALIDATION_KIND, session_id)
        await self._store.delete(keys.user_sessions(user_id))
        return len(session_ids)


SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
