"""Cache invalidation across replicas through the store's pub/sub.

A change (logout, ban, a replaced imToken, a group's membership) is applied to this process's
caches at once and published as ``<kind>\\0<subject>`` on one channel; every
replica's listener drops its copy. A listener that loses its subscription
cannot know what it missed, so it clears every cache before subscribing
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from messenger_gw import keys
from messenger_gw.background import running

from .base import Store, StoreError

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0
START_TIMEOUT = 2.0


class Invalidatable(Protocol):
    def drop(self, key: str) -> None: ...

    def clear(self) -> None: ...


class Invalidation:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._caches: dict[str, list[Invalidatable]] = {}
        self._stopping = False
        self.subscribed = asyncio.Event()

    def register(self, kind: str, cache: Invalidatable) -> None:
        self._caches.setdefault(kind, []).append(cache)

    async def publish(self, kind: str, subject: str) -> None:
        self._apply(kind, subject)
        await self._store.publish(keys.INVALIDATION_CHANNEL, f"{kind}\0{subject}".encode())

    def clear_all(self) -> None:
        for caches in self._caches.values():
            for cache in caches:
                cache.clear()

    async def listen_forever(self) -> None:
        while not self._stopping:
            try:
                async with self._store.subscribe([keys.INVALIDATION_CHANNEL]) as subscription:
                    self.clear_all()
                    self.subscribed.set()
                    async for message in subscription:
                        kind, _, subject = message.data.decode(errors="replace").partition("\0")
                        self._apply(kind, subject)
            except StoreError as exc:
                log.warning("invalidation subscription lost, caches cleared: %s", exc)
            self.subscribed.clear()
            self.clear_all()
            await asyncio.sleep(RETRY_DELAY)

    def stop(self) -> None:
        self._stopping = True

    def _apply(self, kind: str, subject: str) -> None:
        for cache in self._caches.get(kind, ()):
            cache.drop(subject)


INVALIDATION: web.AppKey[Invalidation] = web.AppKey("invalidation", Invalidation)


@contextlib.asynccontextmanager
async def listening(invalidation: Invalidation) -> AsyncIterator[asyncio.Task[None]]:
    async with running(invalidation.listen_forever(), name="invalidation-listener", stop=invalidation.stop) as task:
        # Serve only once invalidations are heard (bounded: a store that is down at
        # start-up must not keep the gateway from starting; readiness reports it).
        subscribed = asyncio.create_task(invalidation.subscribed.wait())
        await asyncio.wait({task, subscribed}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        subscribed.cancel()
        yield task
