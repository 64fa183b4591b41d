"""Concurrent set-if-absent claims coalesced into one store round trip.

Every signed request claims its nonce with ``SET NX``: the one store round
trip the warm path makes. Awaited one by one, each costs a full client-side
command cycle; here, the claims that arrive while a batch is in flight wait
for it and then go together as one command (DESIGN section 11 measured the
difference). With no batch in flight a claim goes at once, so a quiet
gateway adds no delay.
"""

from __future__ import annotations

import asyncio

from .base import Store, StoreError

MAX_BATCH = 512


class SetIfAbsentCoalescer:
    """Claims of keys that all take the same value and time to live."""

    def __init__(self, store: Store, *, value: bytes, ttl: float) -> None:
        self._store = store
        self._value = value
        self._ttl = ttl
        self._waiting: list[tuple[str, asyncio.Future[bool]]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def claim(self, key: str) -> bool:
        """True when this call set ``key``; False when it was already there."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._send_batches())
        return await future

    async def _send_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    results = await self._store.set_if_absent_many([k for k, _ in batch], self._value, ttl=self._ttl)
                except StoreError as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(StoreError(str(exc)))
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # the caller may have been cancelled
                        future.set_result(result)
        finally:
            self._in_flight = None
