"""A bounded, expiring in-process cache: the warm path's answer to a store round trip.

Entries expire on their own deadline and the least recently used one goes
when the cache is full. What a cache holds is also dropped on invalidation
(see :mod:`messenger_gw.store.invalidation`), so the deadline only bounds how long
a missed invalidation can last.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, *, max_size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1 or ttl <= 0:
            raise ValueError("max_size must be at least 1 and ttl positive")
        self._max_size = max_size
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if deadline <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Cache ``value``; ``ttl`` may shorten (never lengthen) the cache's own."""
        lifetime = self._ttl if ttl is None else min(ttl, self._ttl)
        self._entries[key] = (self._clock() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
