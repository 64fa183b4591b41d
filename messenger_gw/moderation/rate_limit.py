"""Fixed-window rate limits counted in the store, so every replica shares them."""

from __future__ import annotations

import math
from typing import ClassVar

from aiohttp import web

from messenger_gw import errors, keys
from messenger_gw.store import Store


class RateLimited(errors.GatewayError):
    status = 429
    code = errors.RATE_LIMITED

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many requests; try again later")
        self.retry_after = max(1, math.ceil(retry_after))

    def response(self) -> web.Response:
        response = super().response()
        response.headers["Retry-After"] = str(self.retry_after)
        return response


class RateLimit:
    WINDOW: ClassVar[float] = 60.0

    def __init__(self, store: Store, scope: str, per_minute: int) -> None:
        self._store = store
        self._scope = scope
        self._limit = per_minute

    async def exceeded(self, subject: str, *, once_per: str = "") -> bool:
        """Count one hit for ``subject``; whether it goes past the limit. A limit of 0 is off.

        ``once_per`` names what the hit is for (a message): a second hit for the same name within
        the window counts nothing and is never past the limit, since the first one decided.
        """
        if self._limit == 0:
            return False
        if once_per and not await self._store.set_if_absent(
            keys.rate(f"{self._scope}-once", f"{subject}:{once_per}"), b"", ttl=self.WINDOW
        ):
            return False
        return await self._store.incr(keys.rate(self._scope, subject), ttl=self.WINDOW) > self._limit

    async def hit(self, subject: str) -> None:
        """Count one hit for ``subject``; raise :class:`RateLimited` past the limit."""
        if await self.exceeded(subject):
            raise RateLimited(await self._store.ttl(keys.rate(self._scope, subject)) or self.WINDOW)
