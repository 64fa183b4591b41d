"""The production store: Redis through ``redis.asyncio`` (redis-py).

URLs: ``redis://``, ``rediss://`` and ``unix://`` for a standalone server;
``redis+cluster://`` and ``rediss+cluster://`` for Redis Cluster (any node as
the seed); ``redis+sentinel://`` and ``rediss+sentinel://`` for a master found
through Redis Sentinel (:class:`SentinelURL`). Values stay ``bytes``
(``decode_responses=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import NoScriptError, RedisError

from messenger_gw.settings import SENTINEL_SUFFIX, SentinelURL

from .base import Bucket, Message, PendingEntry, Store, StoreError, StreamEntry, Subscription

CLUSTER_SUFFIX = "+cluster"

# SET NX PX for each key, answered as one array: one command on the wire and one reply to read,
# where a pipeline costs redis-py a command cycle (packing, a read under a timeout) per key.
_SET_IF_ABSENT_MANY = """
local claimed = {}
for i, key in ipairs(KEYS) do
    claimed[i] = redis.call('SET', key, ARGV[1], 'PX', ARGV[2], 'NX') and 1 or 0
end
return claimed
"""

# Token buckets, each kept as one number: the time at which it is full again (GCRA, as in
# redis-cell). Taking a token moves that time on by one interval; a bucket more than burst - 1
# intervals from full has none. The server's clock, so every replica reads the same time.
# KEYS: the buckets; ARGV: milliseconds per token and burst, for each. Answers, per bucket,
# 0 (taken) or the milliseconds until a token is there.
_TAKE_TOKENS = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + now[2] / 1000
local waits = {}
for i, key in ipairs(KEYS) do
    local interval, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
    local full_at = math.max(tonumber(redis.call('GET', key) or now_ms), now_ms)
    local wait = full_at - now_ms - (burst - 1) * interval
    if wait > 0 then
        waits[i] = math.max(1, math.ceil(wait))
    else
        full_at = full_at + interval
        redis.call('SET', key, string.format('%.3f', full_at), 'PX', math.ceil(full_at - now_ms))
        waits[i] = 0
    end
end
return waits
"""

# The same buckets, ``count`` tokens spent in each whether it had them or not, the first of them
# ``age`` ms ago (a bucket full then refills from then). ARGV: milliseconds per token, the count and
# the age, for each. Answers the milliseconds until each is full again.
_SPEND_TOKENS = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + now[2] / 1000
local fulls = {}
for i, key in ipairs(KEYS) do
    local interval, count, age = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
    local since = now_ms - age
    local full_at = math.max(tonumber(redis.call('GET', key) or since), since) + count * interval
    local full_in = math.ceil(full_at - now_ms)
    redis.call('SET', key, string.format('%.3f', full_at), 'PX', math.max(1, full_in))
    fulls[i] = math.max(0, full_in)
end
return fulls
"""


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        # The redis-py message may quote the URL; keep only the class and the reply text.
        raise StoreError(f"{type(exc).__name__}: {_first_line(exc)}") from exc
    except OSError as exc:
        raise StoreError(f"{type(exc).__name__}: {exc.strerror or exc}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


class _DedicatedScript:
    """One Lua script run on a connection of its own: EVALSHA straight on the connection.

    For every command redis-py's client takes a connection from the pool, wraps the call in
    its retry and observability layers and gives the connection back; for the nonce claims,
    one call per batch on the warm path, that was about 2% of the /im path's CPU time
    (``docs/performance.md``). A lock keeps one call at a time on the connection; a failed or
    interrupted call drops the connection (its reply may still be on the way) and the next
    call takes a new one. Nothing is retried: a claim whose reply was lost may have been made.
    """

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._pool = client.connection_pool
        self._script = script.encode()
        self._sha = hashlib.sha1(self._script).hexdigest()  # noqa: S324 - the name Redis gives the script
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, keys: Sequence[str], args: Sequence[bytes | int]) -> Any:
        async with self._lock:
            if self._connection is None:
                self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            connection = self._connection
            try:
                await connection.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
                try:
                    return await connection.read_response()
                except NoScriptError:  # a restarted or flushed server: EVAL loads it again
                    await connection.send_command("EVAL", self._script, len(keys), *keys, *args)
                    return await connection.read_response()
            except BaseException:
                self._connection = None
                await connection.disconnect()
                await self._pool.release(connection)
                raise

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._pool.release(self._connection)
                self._connection = None


def _sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the master the sentinels name: it asks them again whenever it reconnects,
    so after a failover it finds the new master."""
    parsed = SentinelURL.parse(url)
    auth: dict[str, Any] = {"username": parsed.username, "password": parsed.password, "ssl": parsed.tls}
    timeouts = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=auth | timeouts)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(parsed.master, db=parsed.db, health_check_interval=30, **auth, **options)
    return master


class RedisStore(Store):
    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self._client = client
        self._set_if_absent_many = (
            None if isinstance(client, RedisCluster) else _DedicatedScript(client, _SET_IF_ABSENT_MANY)
        )
        self._take_tokens = None if isinstance(client, RedisCluster) else _DedicatedScript(client, _TAKE_TOKENS)
        self._spend_tokens = None if isinstance(client, RedisCluster) else _DedicatedScript(client, _SPEND_TOKENS)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0, max_connections: int = 200) -> RedisStore:
        scheme, sep, rest = url.partition("://")
        options: dict[str, Any] = {
            "decode_responses": False,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_connections": max_connections,
        }
        if scheme.endswith(CLUSTER_SUFFIX):
            return cls(RedisCluster.from_url(scheme[: -len(CLUSTER_SUFFIX)] + sep + rest, **options))
        if scheme.endswith(SENTINEL_SUFFIX):
            return cls(_sentinel_master(url, options))
        return cls(redis.Redis.from_url(url, health_check_interval=30, **options))

    async def ping(self) -> None:
        with _translated():
            await self._client.ping()

    async def get(self, key: str) -> bytes | None:
        with _translated():
            return cast(bytes | None, await self._client.get(key))

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with _translated():
            await self._client.set(key, value, px=_ms(ttl) if ttl is not None else None)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        with _translated():
            return bool(await self._client.set(key, value, px=_ms(ttl), nx=True))

    async def set_if_absent_many(self, keys: Sequence[str], value: bytes, *, ttl: float) -> list[bool]:
        if not keys:
            return []
        with _translated():
            if self._set_if_absent_many is None:
                # On Cluster a script's keys must share a slot; a pipeline (not a transaction) need not.
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.set(key, value, px=_ms(ttl), nx=True)
                    replies = await pipe.execute()
            else:
                replies = await self._set_if_absent_many(keys, [value, _ms(ttl)])
        return [bool(reply) for reply in replies]

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with _translated():
            if isinstance(self._client, RedisCluster):
                # Keys may live in different slots; DEL of many keys needs one slot.
                return sum([int(await self._client.delete(key)) for key in keys])
            return int(await self._client.delete(*keys))

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        keys, args = [bucket.key for bucket in buckets], [_bucket_args(bucket) for bucket in buckets]
        return [int(wait_ms) / 1000 for wait_ms in await self._per_key(_TAKE_TOKENS, self._take_tokens, keys, args)]

    async def spend_tokens(self, spends: Sequence[tuple[Bucket, int, float]]) -> list[float]:
        keys = [bucket.key for bucket, _, _ in spends]
        args = [(_interval_ms(bucket), count, _age_ms(age)) for bucket, count, age in spends]
        return [int(full_ms) / 1000 for full_ms in await self._per_key(_SPEND_TOKENS, self._spend_tokens, keys, args)]

    async def _per_key(
        self, source: str, script: _DedicatedScript | None, keys: Sequence[str], args: Sequence[Sequence[bytes | int]]
    ) -> list[Any]:
        """A script answering per key, each key with its own arguments: one call on its connection; on Cluster,
        where a script's keys must share a slot, one script per key in one pipeline."""
        if not keys:
            return []
        with _translated():
            if script is None:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, key_args in zip(keys, args, strict=True):
                        pipe.eval(source, 1, key, *key_args)
                    return [reply for [reply] in await pipe.execute()]
            return list(await script(keys, [arg for key_args in args for arg in key_args]))

    async def ttl(self, key: str) -> float | None:
        with _translated():
            ms = int(await self._client.pttl(key))
        return ms / 1000 if ms >= 0 else None

    async def hget(self, key: str, field: str) -> bytes | None:
        with _translated():
            return cast(bytes | None, await self._client.hget(key, field))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        with _translated():
            raw = cast(dict[bytes, bytes], await self._client.hgetall(key))
        return {field.decode(): value for field, value in raw.items()}

    async def hset(self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        with _translated():
            if ttl is None:
                await self._client.hset(key, mapping=_fields(mapping))
                return
            # One key, so one slot: a transaction is valid on Cluster too.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=_fields(mapping))
                pipe.pexpire(key, _ms(ttl))
                await pipe.execute()

    async def hdel(self, key: str, *fields: str) -> int:
        if not fields:
            return 0
        with _translated():
            return int(await self._client.hdel(key, *fields))

    async def append(self, stream: str, fields: Mapping[str, bytes], *, max_len: int | None = None) -> str:
        with _translated():
            entry_id = cast(
                bytes, await self._client.xadd(stream, _fields(fields), maxlen=max_len, approximate=max_len is not None)
            )
        return entry_id.decode()

    async def read_range(self, stream: str, *, after: str | None = None, count: int) -> list[StreamEntry]:
        with _translated():
            raw = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await self._client.xrange(stream, min=f"({after}" if after else "-", max="+", count=count),
            )
        return [_entry(entry_id, fields) for entry_id, fields in raw]

    async def read_range_reverse(self, stream: str, *, before: str | None = None, count: int) -> list[StreamEntry]:
        with _translated():
            raw = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await self._client.xrevrange(stream, max=f"({before}" if before else "+", min="-", count=count),
            )
        return [_entry(entry_id, fields) for entry_id, fields in raw]

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            with _translated():
                await self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except StoreError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None = None
    ) -> list[StreamEntry]:
        with _translated():
            replies = cast(
                list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
                await self._client.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=_ms(block) if block else None
                ),
            )
        return [_entry(entry_id, fields) for _, entries in replies or [] for entry_id, fields in entries]

    async def ack(self, stream: str, group: str, *ids: str) -> int:
        if not ids:
            return 0
        with _translated():
            return int(await self._client.xack(stream, group, *ids))

    async def pending(self, stream: str, group: str, *, min_idle: float, count: int) -> list[PendingEntry]:
        with _translated():
            rows = cast(
                list[dict[str, Any]],
                await self._client.xpending_range(
                    stream, group, min="-", max="+", count=count, idle=round(min_idle * 1000) or None
                ),
            )
        return [
            PendingEntry(
                row["message_id"].decode(),
                row["consumer"].decode(),
                row["time_since_delivered"] / 1000,
                row["times_delivered"],
            )
            for row in rows
        ]

    async def claim(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, min_idle: float
    ) -> list[StreamEntry]:
        if not ids:
            return []
        with _translated():
            raw = cast(
                list[tuple[bytes, dict[bytes, bytes] | None]],
                await self._client.xclaim(
                    stream, group, consumer, min_idle_time=round(min_idle * 1000), message_ids=list(ids)
                ),
            )
        claimed = [_entry(entry_id, fields) for entry_id, fields in raw if fields]
        trimmed = [entry_id.decode() for entry_id, fields in raw if not fields]
        if trimmed:  # claimed IDs whose entries were trimmed away: nothing left to deliver
            await self.ack(stream, group, *trimmed)
        return claimed

    async def stream_length(self, stream: str) -> int:
        with _translated():
            return int(await self._client.xlen(stream))

    async def publish(self, channel: str, data: bytes) -> None:
        with _translated():
            await self._client.publish(channel, data)

    def subscribe(self, channels: Sequence[str]) -> Subscription:
        return _RedisSubscription(self._client, channels)

    async def close(self) -> None:
        with _translated():
            for script in (self._set_if_absent_many, self._take_tokens, self._spend_tokens):
                if script is not None:
                    await script.close()
            await self._client.aclose()
            pool = self._client.connection_pool if isinstance(self._client, redis.Redis) else None
            if isinstance(pool, SentinelConnectionPool):  # and the clients that asked the sentinels
                for sentinel in pool.sentinel_manager.sentinels:
                    await sentinel.aclose()


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> StreamEntry:
    return StreamEntry(entry_id.decode(), {k.decode(): v for k, v in fields.items()})


def _fields(mapping: Mapping[str, bytes]) -> dict[Any, Any]:
    # redis-py's annotations want a dict keyed by its own union of encodables.
    return dict(mapping)


def _bucket_args(bucket: Bucket) -> tuple[bytes, int]:
    return _interval_ms(bucket), bucket.burst


def _interval_ms(bucket: Bucket) -> bytes:
    return repr(1000 / bucket.rate).encode()


def _age_ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _RedisSubscription(Subscription):
    def __init__(self, client: redis.Redis | RedisCluster, channels: Sequence[str]) -> None:
        self._client = client
        self._channels = list(channels)
        self._pubsub: PubSub | None = None

    async def __aenter__(self) -> Subscription:
        with _translated():
            if isinstance(self._client, RedisCluster):
                # The cluster client picks the pub/sub node from its slot map, loaded lazily.
                await self._client.initialize()
            self._pubsub = pubsub = self._client.pubsub()
            await pubsub.subscribe(*self._channels)
            # Wait for every confirmation, so a publish after entering is seen.
            pending = set(self._channels)
            while pending:
                reply = await pubsub.get_message(timeout=5.0)
                if reply is None:
                    raise StoreError("the store did not confirm the subscription")
                if reply["type"] == "subscribe":
                    pending.discard(reply["channel"].decode())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def __aiter__(self) -> AsyncIterator[Message]:
        if self._pubsub is None:
            raise RuntimeError("enter the subscription (async with) before iterating it")
        with _translated():
            async for reply in self._pubsub.listen():
                if reply["type"] == "message":
                    yield Message(reply["channel"].decode(), reply["data"])
