"""The in-process store for ``messenger-gw dev`` and tests.

It mirrors Redis semantics where the gateway relies on them: lazy expiry,
one type per key (a mismatch is a :class:`StoreError`, like ``WRONGTYPE``),
stream IDs of the form ``<ms>-<seq>``. State is lost when the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

from .base import Bucket, Message, PendingEntry, Store, StoreError, StreamEntry, Subscription

_V = TypeVar("_V", bytes, dict[str, bytes], list[StreamEntry])


@dataclasses.dataclass
class _Group:
    """A consumer group: the last entry delivered, and each pending entry's consumer, delivery time and count."""

    last_delivered: tuple[int, int] = (0, 0)
    pending: dict[str, tuple[str, float, int]] = dataclasses.field(default_factory=dict)


class MemoryStore(Store):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._clock = clock
        self._wall_clock = wall_clock
        self._data: dict[str, bytes | dict[str, bytes] | list[StreamEntry]] = {}
        self._expires: dict[str, float] = {}
        self._last_id = (0, 0)
        self._subscribers: dict[str, set[asyncio.Queue[Message]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._appended = asyncio.Event()
        self._closed = False

    async def ping(self) -> None:
        self._check_open()

    async def get(self, key: str) -> bytes | None:
        return self._lookup(key, bytes)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._check_open()
        self._data[key] = value
        self._set_ttl(key, ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        self._check_open()
        if self._alive(key):
            return False
        self._data[key] = value
        self._set_ttl(key, ttl)
        return True

    async def set_if_absent_many(self, keys: Sequence[str], value: bytes, *, ttl: float) -> list[bool]:
        return [await self.set_if_absent(key, value, ttl=ttl) for key in keys]

    async def delete(self, *keys: str) -> int:
        self._check_open()
        existed = 0
        for key in keys:
            if self._alive(key):
                existed += 1
                self._drop(key)
        return existed

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        return [self._take_token(bucket) for bucket in buckets]

    def _take_token(self, bucket: Bucket) -> float:
        # RedisStore's script, on this store's clock.
        now = self._clock()
        wait, full_at = bucket.take(self._full_at(bucket), now)
        if wait > 0:
            return max(0.001, math.ceil(round(wait * 1000, 6)) / 1000)  # whole ms, as Redis answers
        self._data[bucket.key] = repr(full_at).encode()
        self._set_ttl(bucket.key, full_at - now)
        return 0.0

    async def spend_tokens(self, spends: Sequence[tuple[Bucket, int, float]]) -> list[float]:
        return [self._spend_tokens(bucket, count, age) for bucket, count, age in spends]

    def _spend_tokens(self, bucket: Bucket, count: int, age: float) -> float:
        now = self._clock()
        full_at = self._full_at(bucket, since=now - age) + count / bucket.rate
        self._data[bucket.key] = repr(full_at).encode()
        self._set_ttl(bucket.key, max(0.001, full_at - now))
        return max(0.0, math.ceil(round((full_at - now) * 1000, 6)) / 1000)  # whole ms, as Redis answers

    def _full_at(self, bucket: Bucket, *, since: float | None = None) -> float:
        stored, now = self._lookup(bucket.key, bytes), self._clock() if since is None else since
        try:
            return max(float(stored) if stored is not None else now, now)
        except ValueError:
            raise StoreError("ERR value is not a valid float") from None

    async def ttl(self, key: str) -> float | None:
        self._check_open()
        if not self._alive(key) or key not in self._expires:
            return None
        return self._expires[key] - self._clock()

    async def hget(self, key: str, field: str) -> bytes | None:
        return (self._lookup(key, dict) or {}).get(field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return dict(self._lookup(key, dict) or {})

    async def hset(self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        existing = self._lookup(key, dict)
        if existing is None:
            existing = self._data[key] = {}
        existing.update(mapping)
        if ttl is not None:
            self._set_ttl(key, ttl)

    async def hdel(self, key: str, *fields: str) -> int:
        existing = self._lookup(key, dict)
        if existing is None:
            return 0
        removed = sum(1 for field in fields if existing.pop(field, None) is not None)
        if not existing:
            self._drop(key)
        return removed

    async def append(self, stream: str, fields: Mapping[str, bytes], *, max_len: int | None = None) -> str:
        entries = self._lookup(stream, list)
        if entries is None:
            entries = self._data[stream] = []
        entry = StreamEntry(self._next_id(), dict(fields))
        entries.append(entry)
        self._appended.set()
        self._appended = asyncio.Event()
        if max_len is not None and len(entries) > max_len:
            del entries[: len(entries) - max_len]
        return entry.id

    async def read_range(self, stream: str, *, after: str | None = None, count: int) -> list[StreamEntry]:
        entries = self._lookup(stream, list) or []
        floor = _parse_id(after) if after else (-1, -1)
        return [e for e in entries if _parse_id(e.id) > floor][:count]

    async def read_range_reverse(self, stream: str, *, before: str | None = None, count: int) -> list[StreamEntry]:
        entries = self._lookup(stream, list) or []
        ceiling = _parse_id(before) if before else (float("inf"), 0)
        return [e for e in reversed(entries) if _parse_id(e.id) < ceiling][:count]

    async def ensure_group(self, stream: str, group: str) -> None:
        if self._lookup(stream, list) is None:
            self._data[stream] = []
        self._groups.setdefault((stream, group), _Group())

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None = None
    ) -> list[StreamEntry]:
        state = self._group(stream, group)
        fresh = [e for e in self._lookup(stream, list) or [] if _parse_id(e.id) > state.last_delivered][:count]
        if not fresh and block:
            appended = self._appended
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(appended.wait(), block)
            return await self.read_group(stream, group, consumer, count=count)
        now = self._clock()
        for entry in fresh:
            state.last_delivered = _parse_id(entry.id)
            state.pending[entry.id] = (consumer, now, 1)
        return fresh

    async def ack(self, stream: str, group: str, *ids: str) -> int:
        pending = self._group(stream, group).pending
        return sum(1 for entry_id in ids if pending.pop(entry_id, None) is not None)

    async def pending(self, stream: str, group: str, *, min_idle: float, count: int) -> list[PendingEntry]:
        now = self._clock()
        found = [
            PendingEntry(entry_id, consumer, now - at, deliveries)
            for entry_id, (consumer, at, deliveries) in self._group(stream, group).pending.items()
            if now - at >= min_idle
        ]
        return sorted(found, key=lambda p: _parse_id(p.id))[:count]

    async def claim(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, min_idle: float
    ) -> list[StreamEntry]:
        pending = self._group(stream, group).pending
        entries = {e.id: e for e in self._lookup(stream, list) or []}
        now, claimed = self._clock(), []
        for entry_id in ids:
            if entry_id not in pending or now - pending[entry_id][1] < min_idle:
                continue
            if entry_id not in entries:
                del pending[entry_id]  # trimmed away: nothing left to deliver
                continue
            pending[entry_id] = (consumer, now, pending[entry_id][2] + 1)
            claimed.append(entries[entry_id])
        return claimed

    def _group(self, stream: str, group: str) -> _Group:
        self._check_open()
        state = self._groups.get((stream, group))
        if state is None:
            raise StoreError("NOGROUP: no such consumer group")
        return state

    async def stream_length(self, stream: str) -> int:
        return len(self._lookup(stream, list) or [])

    async def publish(self, channel: str, data: bytes) -> None:
        self._check_open()
        for queue in self._subscribers.get(channel, ()):
            queue.put_nowait(Message(channel, data))

    def subscribe(self, channels: Sequence[str]) -> Subscription:
        return _MemorySubscription(self, channels)

    async def close(self) -> None:
        self._closed = True

    # -- internals -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _alive(self, key: str) -> bool:
        expires = self._expires.get(key)
        if expires is not None and expires <= self._clock():
            self._drop(key)
        return key in self._data

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        self._expires.pop(key, None)

    def _lookup(self, key: str, kind: type[_V]) -> _V | None:
        self._check_open()
        if not self._alive(key):
            return None
        value = self._data[key]
        if not isinstance(value, kind):
            raise StoreError(f"WRONGTYPE: key holds a {type(value).__name__}, not a {kind.__name__}")
        return value

    def _set_ttl(self, key: str, ttl: float | None) -> None:
        if ttl is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = self._clock() + ttl

    def _next_id(self) -> str:
        ms = int(self._wall_clock() * 1000)
        last_ms, last_seq = self._last_id
        self._last_id = (last_ms, last_seq + 1) if ms <= last_ms else (ms, 0)
        return f"{self._last_id[0]}-{self._last_id[1]}"


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise StoreError(f"invalid stream ID {entry_id!r}") from None


class _MemorySubscription(Subscription):
    def __init__(self, store: MemoryStore, channels: Sequence[str]) -> None:
        self._store = store
        self._channels = list(channels)
        self._queue: asyncio.Queue[Message] = asyncio.Queue()

    async def __aenter__(self) -> Subscription:
        self._store._check_open()
        for channel in self._channels:
            self._store._subscribers.setdefault(channel, set()).add(self._queue)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for channel in self._channels:
            self._store._subscribers.get(channel, set()).discard(self._queue)

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            yield await self._queue.get()
