"""Concurrent store calls coalesced into one store round trip.

Every signed request claims its nonce with ``SET NX``: the one store round
trip the warm path makes; a request on a rate-limited route also takes a
token from its bucket. Awaited one by one, each costs a full client-side
command cycle; here, the calls that arrive while a batch is in flight wait
for it and then go together as one command (DESIGN section 11 measured the
difference). With no batch in flight a call goes at once, so a quiet
gateway adds no delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .base import Store, StoreError

MAX_BATCH = 512

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Calls of ``send`` (many items in, a result per item out, in order) shared by concurrent callers."""

    def __init__(self, send: Callable[[Sequence[T]], Awaitable[list[R]]]) -> None:
        self._send = send
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result, from the next batch sent."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._send_batches())
        return await future

    async def _send_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    results = await self._send([item for item, _ in batch])
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


class SetIfAbsentCoalescer(Coalescer[str, bool]):
    """Claims of keys that all take the same value and time to live."""

    def __init__(self, store: Store, *, value: bytes, ttl: float) -> None:
        super().__init__(lambda keys: store.set_if_absent_many(keys, value, ttl=ttl))

    claim = Coalescer.submit  # True when this call set the key; False when it was already there
