"""One behavioural suite, run against the in-memory store, real Redis, a real Redis Cluster, and a
real Redis found through a real Sentinel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from messenger_gw.sandbox import FakeClock
from messenger_gw.store import MemoryStore, RedisStore
from messenger_gw.store.base import Bucket, Message, Store, StoreError
from tests.conftest import LOOPBACK, RedisProcess, SentinelProcess, free_port

Advance = Callable[[float], Awaitable[None]]

IMPLEMENTATIONS = ["memory", "redis", "redis-cluster", "redis-sentinel"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def store_and_clock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Advance]]:
    store: Store
    if request.param == "memory":
        clock = FakeClock(0)
        store = MemoryStore(clock=clock)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

    else:
        if request.param == "redis-sentinel":
            sentinel, server = request.getfixturevalue("redis_sentinel")
            url = sentinel.url
        else:
            server = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
            url = f"{'redis' if request.param == 'redis' else 'redis+cluster'}://127.0.0.1:{server.port}"
        with server.client() as c:
            c.flushall()
        store = RedisStore.from_url(url)

        async def advance(seconds: float) -> None:
            await asyncio.sleep(seconds)

    yield store, advance
    await store.close()


@pytest.fixture
def store(store_and_clock: tuple[Store, Advance]) -> Store:
    return store_and_clock[0]


@pytest.fixture
def advance(store_and_clock: tuple[Store, Advance]) -> Advance:
    return store_and_clock[1]


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_get_returns_what_set_stored(store: Store) -> None:
    assert await store.get("k") is None
    await store.set("k", b"\x00value")
    assert await store.get("k") == b"\x00value"


async def test_set_with_ttl_expires(store: Store, advance: Advance) -> None:
    await store.set("k", b"v", ttl=0.2)
    remaining = await store.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= 0.2
    await advance(0.35)
    assert await store.get("k") is None
    assert await store.ttl("k") is None


async def test_set_without_ttl_clears_an_earlier_expiry(store: Store, advance: Advance) -> None:
    await store.set("k", b"old", ttl=0.2)
    await store.set("k", b"new")
    await advance(0.35)
    assert await store.get("k") == b"new"
    assert await store.ttl("k") is None


async def test_set_if_absent_sets_only_once_until_expiry(store: Store, advance: Advance) -> None:
    assert await store.set_if_absent("nonce", b"1", ttl=0.2) is True
    assert await store.set_if_absent("nonce", b"2", ttl=0.2) is False
    assert await store.get("nonce") == b"1"
    await advance(0.35)
    assert await store.set_if_absent("nonce", b"3", ttl=0.2) is True


async def test_delete_counts_the_keys_that_existed(store: Store) -> None:
    await store.set("a", b"1")
    await store.hset("b", {"f": b"1"})
    assert await store.delete("a", "b", "missing") == 2
    assert await store.get("a") is None
    assert await store.hgetall("b") == {}
    assert await store.delete() == 0


async def test_hash_fields_round_trip(store: Store) -> None:
    assert await store.hgetall("im:token:u1") == {}
    assert await store.hget("im:token:u1", "1") is None
    await store.hset("im:token:u1", {"1": b"ios", "5": b"web"})
    await store.hset("im:token:u1", {"5": b"web2"})
    assert await store.hget("im:token:u1", "5") == b"web2"
    assert await store.hgetall("im:token:u1") == {"1": b"ios", "5": b"web2"}
    assert await store.hdel("im:token:u1", "1", "9") == 1
    assert await store.hgetall("im:token:u1") == {"5": b"web2"}


async def test_removing_the_last_field_removes_the_hash(store: Store) -> None:
    await store.hset("h", {"f": b"1"})
    await store.hdel("h", "f")
    assert await store.delete("h") == 0


async def test_hash_ttl_expires_the_whole_hash(store: Store, advance: Advance) -> None:
    await store.hset("h", {"f": b"1"}, ttl=0.2)
    await advance(0.35)
    assert await store.hgetall("h") == {}


async def test_wrong_kind_of_key_is_a_store_error(store: Store) -> None:
    await store.set("plain", b"v")
    with pytest.raises(StoreError):
        await store.hget("plain", "f")
    with pytest.raises(StoreError):
        await store.append("plain", {"f": b"v"})


async def test_stream_entries_come_back_in_order_after_a_cursor(store: Store) -> None:
    ids = [await store.append("audit", {"n": str(i).encode()}) for i in range(5)]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    assert len(set(ids)) == 5
    first = await store.read_range("audit", count=2)
    assert [e.fields["n"] for e in first] == [b"0", b"1"]
    rest = await store.read_range("audit", after=first[-1].id, count=10)
    assert [e.fields["n"] for e in rest] == [b"2", b"3", b"4"]
    assert await store.read_range("audit", after=ids[-1], count=10) == []
    assert await store.stream_length("audit") == 5


async def test_missing_stream_reads_empty(store: Store) -> None:
    assert await store.read_range("nothing", count=10) == []
    assert await store.stream_length("nothing") == 0


async def test_stream_max_len_bounds_retention(store: Store) -> None:
    for i in range(1000):
        await store.append("bounded", {"n": str(i).encode()}, max_len=100)
    length = await store.stream_length("bounded")
    # Redis trims in whole blocks, so a few more than max_len may remain.
    assert 100 <= length < 1000
    newest = await store.read_range("bounded", count=length)
    assert newest[-1].fields["n"] == b"999"


async def test_subscriber_receives_messages_published_after_entering(store: Store) -> None:
    async with store.subscribe(["inval", "other"]) as subscription:
        await store.publish("unrelated", b"x")
        await store.publish("inval", b"u1")
        await store.publish("other", b"u2")
        received: list[Message] = []
        async with asyncio.timeout(5):
            async for message in subscription:
                received.append(message)
                if len(received) == 2:
                    break
    assert received == [Message("inval", b"u1"), Message("other", b"u2")]


async def test_unreachable_store_is_a_store_error() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(StoreError):
        await store.get("k")
    with pytest.raises(StoreError):
        await store.ping()
    await store.close()


async def test_closed_memory_store_is_a_store_error() -> None:
    store = MemoryStore()
    await store.close()
    with pytest.raises(StoreError):
        await store.get("k")


async def test_a_token_bucket_gives_its_burst_then_a_token_per_interval(store: Store, advance: Advance) -> None:
    async def take() -> float:
        [wait] = await store.take_tokens([Bucket("bucket", rate=5, burst=3)])  # a token every 0.2 s
        return wait

    assert [await take() for _ in range(3)] == [0.0, 0.0, 0.0]
    first_wait = await take()
    assert 0 < first_wait <= 0.2
    second_wait = await take()
    assert 0 < second_wait <= first_wait, "a refusal takes nothing"
    await advance(0.25)
    assert await take() == 0.0
    assert await take() > 0, "one interval brought one token"
    await advance(0.65)  # three intervals: full again, and the key gone with its expiry
    assert await store.get("bucket") is None
    assert [await take() for _ in range(4)][:3] == [0.0, 0.0, 0.0]


async def test_token_buckets_taken_together_answer_each_in_order(store: Store) -> None:
    one, other = Bucket("one", rate=1, burst=1), Bucket("other", rate=1, burst=2)
    waits = await store.take_tokens([one, other, one, other, other])
    assert waits[0] == waits[1] == waits[3] == 0.0
    assert 0 < waits[2] <= 1.0, "the second take of one sees the first"
    assert 0 < waits[4] <= 1.0
    assert await store.take_tokens([]) == []


async def test_spent_tokens_put_a_bucket_in_debt_that_takes_are_refused_until_it_is_paid(
    store: Store, advance: Advance
) -> None:
    bucket = Bucket("spent", rate=5, burst=2)  # a token every 0.2 s
    [full_in] = await store.spend_tokens([(bucket, 3, 0.0)])
    assert 0.59 <= full_in <= 0.6, "three tokens spent: full again in three intervals"
    [wait] = await store.take_tokens([bucket])
    assert 0.35 <= wait <= 0.4, "one interval beyond empty: a token only once the debt is paid"
    await advance(0.45)
    assert await store.take_tokens([bucket]) == [0.0]
    one, other = Bucket("one", rate=1, burst=1), Bucket("other", rate=2, burst=1)
    fulls = await store.spend_tokens([(one, 1, 0.0), (other, 4, 0.0), (one, 2, 0.0)])
    assert [round(f, 1) for f in fulls] == [1.0, 2.0, 3.0], "in order, each seeing the ones before"
    assert await store.spend_tokens([]) == []


async def test_tokens_spent_a_while_ago_from_a_full_bucket_count_its_refill_since(store: Store) -> None:
    bucket = Bucket("spent-earlier", rate=5, burst=4)  # a token every 0.2 s
    [full_in] = await store.spend_tokens([(bucket, 2, 0.1)])
    assert 0.29 <= full_in <= 0.3, "two intervals from 0.1 s ago"
    [full_in] = await store.spend_tokens([(Bucket("long-ago", rate=5, burst=4), 1, 5.0)])
    assert full_in == 0.0, "refilled since: full again"


async def test_set_if_absent_many_answers_per_item_in_one_call(store: Store) -> None:
    await store.set("taken", b"x")
    results = await store.set_if_absent_many(["free", "taken", "free"], b"1", ttl=1.0)
    assert results == [True, False, False]
    assert await store.get("free") == b"1"
    assert await store.get("taken") == b"x"
    assert 0 < (await store.ttl("free") or 0) <= 1.0
    assert await store.set_if_absent_many([], b"1", ttl=1.0) == []


async def test_stream_entries_come_back_newest_first_before_a_cursor(store: Store) -> None:
    ids = [await store.append("log", {"n": str(i).encode()}) for i in range(5)]
    newest = await store.read_range_reverse("log", count=2)
    assert [e.fields["n"] for e in newest] == [b"4", b"3"]
    older = await store.read_range_reverse("log", before=newest[-1].id, count=10)
    assert [e.fields["n"] for e in older] == [b"2", b"1", b"0"]
    assert await store.read_range_reverse("log", before=ids[0], count=10) == []
    assert await store.read_range_reverse("nothing", count=10) == []


async def test_a_consumer_group_delivers_each_entry_once_until_claimed(store: Store, advance: Advance) -> None:
    await store.ensure_group("events", "workers")
    await store.ensure_group("events", "workers")  # idempotent
    first = await store.append("events", {"n": b"1"})
    await store.append("events", {"n": b"2"})
    batch = await store.read_group("events", "workers", "c1", count=10)
    assert [e.fields["n"] for e in batch] == [b"1", b"2"]
    assert await store.read_group("events", "workers", "c2", count=10) == [], "delivered once per group"
    assert await store.ack("events", "workers", first) == 1
    assert await store.pending("events", "workers", min_idle=10, count=10) == []
    await advance(0.3)
    [stale] = await store.pending("events", "workers", min_idle=0.2, count=10)
    assert (stale.consumer, stale.deliveries) == ("c1", 1)
    [claimed] = await store.claim("events", "workers", "c2", [stale.id], min_idle=0.2)
    assert claimed.fields["n"] == b"2"
    [again] = await store.pending("events", "workers", min_idle=0, count=10)
    assert (again.consumer, again.deliveries) == ("c2", 2)
    assert await store.claim("events", "workers", "c3", [stale.id], min_idle=0.2) == [], "not idle long enough"


async def test_a_group_read_waits_for_an_append(store: Store) -> None:
    await store.ensure_group("later", "workers")

    async def append_soon() -> None:
        await asyncio.sleep(0.05)
        await store.append("later", {"n": b"x"})

    appending = asyncio.create_task(append_soon())
    batch = await store.read_group("later", "workers", "c1", count=10, block=1.0)
    await appending
    assert [e.fields["n"] for e in batch] == [b"x"]
    assert await store.read_group("later", "workers", "c1", count=10, block=0.05) == []


async def test_reading_a_missing_group_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.read_group("nogroup", "workers", "c1", count=1)


async def test_claims_survive_a_flushed_script_cache_and_a_dropped_connection(clean_redis: RedisProcess) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{clean_redis.port}")
    try:
        assert await store.set_if_absent_many(["a"], b"", ttl=10) == [True]
        with clean_redis.client() as admin:
            admin.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
        assert await store.set_if_absent_many(["a", "b"], b"", ttl=10) == [False, True]
        with clean_redis.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)  # the claims' connection among them
        with contextlib.suppress(StoreError):  # a call on the dropped connection may fail; the next takes a new one
            await store.set_if_absent_many(["c"], b"", ttl=10)
        assert await store.set_if_absent_many(["d"], b"", ttl=10) == [True]
    finally:
        await store.close()


@pytest.fixture
def sentinel_with_replica() -> Iterator[tuple[SentinelProcess, RedisProcess, RedisProcess]]:
    """A master, its replica (in sync), and a sentinel that knows both."""
    master = RedisProcess("--save", "", "--appendonly", "no")
    master.start()
    replica = RedisProcess("--save", "", "--appendonly", "no", "--replicaof", LOOPBACK, str(master.port))
    replica.start()
    sentinel = SentinelProcess(master)
    try:
        with replica.client() as c:
            wait_until(lambda: c.info("replication").get("master_link_status") == "up")
        sentinel.start()
        yield sentinel, master, replica
    finally:
        for server in (sentinel, replica, master):
            server.remove()


def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)


async def test_a_store_found_through_sentinel_follows_a_failover(
    sentinel_with_replica: tuple[SentinelProcess, RedisProcess, RedisProcess],
) -> None:
    sentinel, master, replica = sentinel_with_replica
    store = RedisStore.from_url(sentinel.url, timeout=1)
    try:
        await store.set("before", b"1")
        assert await store.set_if_absent_many(["nonce-1"], b"", ttl=60) == [True]
        with replica.client() as c:
            wait_until(lambda: c.get("nonce-1") is not None)

        master.stop()  # killed, as a crashed host would be: the sentinel promotes the replica
        wait_until(lambda: sentinel.master_port() == replica.port, seconds=30)
        # Calls fail while there is no master; then the store, reconnecting, asks the sentinel again.
        deadline = time.monotonic() + 15
        while True:
            try:
                await store.set("after", b"2")
                claimed = await store.set_if_absent_many(["nonce-1", "nonce-2"], b"", ttl=60)
                break
            except StoreError:
                assert time.monotonic() < deadline, "the store did not find the new master"
                await asyncio.sleep(0.1)
        assert claimed == [False, True], "a nonce claimed before the failover stays claimed"
        assert await store.get("before") == b"1"
        with replica.client() as c:
            assert c.get("after") == b"2"  # written to the promoted replica
    finally:
        await store.close()
