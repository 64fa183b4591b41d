"""What the gateway keeps, behind one small interface.

Two implementations share the behaviour that ``tests/store/test_store.py`` pins down:

* :class:`messenger_gw.redis_store.RedisStore`, standalone or Cluster, for production;
* :class:`messenger_gw.memory_store.MemoryStore`, in process, for ``messenger-gw dev``.

Keys are ``str``, values ``bytes``: callers encode their own records (orjson).
Every failure to reach the store, or a command it refuses, is a
:class:`StoreError`, so callers decide their failure policy in one place.

In Redis Cluster, keys touched together by one multi-key command must share
a hash tag (``{...}``); the key builders of each feature are written that way.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType

from aiohttp import web


class StoreError(Exception):
    """The store is unreachable, timed out, or refused a command."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket in the store: at most ``burst`` tokens, ``rate`` more each second."""

    key: str
    rate: float
    burst: int

    def take(self, full_at: float | None, now: float) -> tuple[float, float]:
        """One token, GCRA as the stores keep it (the time at which the bucket is full again; None for a bucket
        never taken from): the seconds to wait (0 when taken), and that time after the take."""
        interval = 1 / self.rate
        full_at = now if full_at is None or full_at < now else full_at
        wait = full_at - now - (self.burst - 1) * interval
        return (wait, full_at) if wait > 0 else (0.0, full_at + interval)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEntry:
    id: str
    fields: dict[str, bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class PendingEntry:
    """A stream entry delivered to a consumer group and not acknowledged yet."""

    id: str
    consumer: str
    idle: float  # seconds since it was last delivered
    deliveries: int


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: bytes


class Subscription(abc.ABC):
    """Messages published on some channels, from the moment the subscription is entered.

    Use as ``async with store.subscribe([...]) as sub: async for message in sub: ...``.
    Entering returns only once the store confirms the subscription, so a
    message published after that is delivered.
    """

    @abc.abstractmethod
    async def __aenter__(self) -> Subscription: ...

    @abc.abstractmethod
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[Message]: ...


class Store(abc.ABC):
    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers."""

    # -- key/value ---------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Set ``key``; with ``ttl`` (seconds) it expires, without it any old expiry is cleared."""

    @abc.abstractmethod
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Set ``key`` only if it does not exist; True when this call set it."""

    @abc.abstractmethod
    async def set_if_absent_many(self, keys: Sequence[str], value: bytes, *, ttl: float) -> list[bool]:
        """:meth:`set_if_absent` for each key, in one round trip; a result per key, in order."""

    @abc.abstractmethod
    async def delete(self, *keys: str) -> int:
        """Delete keys of any kind; the number that existed."""

    @abc.abstractmethod
    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        """Take one token from each bucket, in one round trip: per bucket, in order, 0.0 when a token was
        taken, else the seconds until one will be there (nothing taken). A bucket is full when new."""

    @abc.abstractmethod
    async def spend_tokens(self, spends: Sequence[tuple[Bucket, int, float]]) -> list[float]:
        """Take ``count`` tokens from each bucket whether it has them or not (tokens already spent, told after, the
        first of them ``age`` seconds ago: a bucket full then refills from then on), in one round trip: per bucket,
        in order, the seconds until it is full again. More than ``burst`` intervals is a bucket in debt, refused by
        :meth:`take_tokens` until it has paid."""

    @abc.abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; None when it has no expiry or does not exist."""

    # -- hashes --------------------------------------------------------------

    @abc.abstractmethod
    async def hget(self, key: str, field: str) -> bytes | None: ...

    @abc.abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    @abc.abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        """Set fields of hash ``key``; with ``ttl`` the whole hash expires then."""

    @abc.abstractmethod
    async def hdel(self, key: str, *fields: str) -> int: ...

    # -- streams -------------------------------------------------------------

    @abc.abstractmethod
    async def append(self, stream: str, fields: Mapping[str, bytes], *, max_len: int | None = None) -> str:
        """Append an entry and return its ID (``<ms>-<seq>``, increasing).

        With ``max_len`` the oldest entries are trimmed so that at least
        ``max_len`` remain; Redis trims in whole blocks, so a few more may stay.
        """

    @abc.abstractmethod
    async def read_range(self, stream: str, *, after: str | None = None, count: int) -> list[StreamEntry]:
        """Up to ``count`` entries, oldest first, with IDs greater than ``after``."""

    @abc.abstractmethod
    async def read_range_reverse(self, stream: str, *, before: str | None = None, count: int) -> list[StreamEntry]:
        """Up to ``count`` entries, newest first, with IDs less than ``before``."""

    @abc.abstractmethod
    async def stream_length(self, stream: str) -> int: ...

    # -- consumer groups (at-least-once processing of a stream) ----------------------------

    @abc.abstractmethod
    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the group (and the stream) if missing; a new group starts at the stream's first entry."""

    @abc.abstractmethod
    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None = None
    ) -> list[StreamEntry]:
        """Entries never delivered to the group, now pending for ``consumer``; waits up to ``block`` s for one."""

    @abc.abstractmethod
    async def ack(self, stream: str, group: str, *ids: str) -> int: ...

    @abc.abstractmethod
    async def pending(self, stream: str, group: str, *, min_idle: float, count: int) -> list[PendingEntry]:
        """Pending entries idle for at least ``min_idle`` seconds, oldest first."""

    @abc.abstractmethod
    async def claim(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, min_idle: float
    ) -> list[StreamEntry]:
        """Take pending entries over for ``consumer`` (a new delivery each); trimmed entries are dropped."""

    # -- pub/sub ---------------------------------------------------------------

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def subscribe(self, channels: Sequence[str]) -> Subscription: ...

    # -- lifecycle -------------------------------------------------------------

    @abc.abstractmethod
    async def close(self) -> None: ...


STORE: web.AppKey[Store] = web.AppKey("store", Store)
