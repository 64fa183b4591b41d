"""Rate limits per user and route class: the buckets themselves (no HTTP request, as the WebSocket guard asks
them), and /im end to end: gateways on one real redis-server over the recording sandbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import orjson
import pytest

from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.moderation import EagerRateLimits, RateLimits
from messenger_gw.sandbox import FakeClock
from messenger_gw.sdk import GatewayClient
from messenger_gw.settings import BucketLimit, RateLimitSettings
from messenger_gw.store import Bucket, MemoryStore, RedisStore, Store, StoreError
from tests.conftest import GOOD_CODE, LOOPBACK, Gateway, Recorder, RedisProcess, StartGateway, free_port, sample

SEND_A_MESSAGE = {"recvID": "alice", "content": {"content": "hi"}, "contentType": 101, "sessionType": 1}
PULL = {"seqRanges": [], "order": 0}


def limits(*, fail_open: bool = True) -> RateLimitSettings:
    return RateLimitSettings(
        classes={
            "send": BucketLimit(rate=0.5, burst=2, text="30/m:2"),
            "sync": BucketLimit(rate=1, burst=5, text="1/s:5"),
            "group_write": None,
            "upload": BucketLimit(rate=1, burst=1, text="1/s:1"),
        },
        fail_open=fail_open,
    )


# -- the buckets, asked as the WebSocket guard will ask them ----------------------------------------


async def test_a_class_gives_its_burst_then_answers_when_to_come_back() -> None:
    clock = FakeClock(0)
    metrics = Metrics()
    buckets = RateLimits(MemoryStore(clock=clock), limits(), metrics=metrics)
    assert [await buckets.check("alice", "send") for _ in range(2)] == [None, None]
    assert await buckets.check("alice", "send") == 2.0, "a token every 2 s"
    clock.advance(1.5)
    assert await buckets.check("alice", "send") == 0.5
    clock.advance(0.5)
    assert await buckets.check("alice", "send") is None
    assert sample(metrics, "messenger_gw_rate_limited_total", **{"class": "send"}) == 2


async def test_each_user_and_class_has_a_bucket_of_its_own_and_an_off_class_never_refuses() -> None:
    buckets = RateLimits(MemoryStore(clock=FakeClock(0)), limits(), metrics=Metrics())
    assert await buckets.check("alice", "upload") is None
    assert await buckets.check("alice", "upload") is not None
    assert await buckets.check("bob", "upload") is None, "another user"
    assert await buckets.check("alice", "sync") is None, "another class"
    assert [await buckets.check("alice", "group_write") for _ in range(100)] == [None] * 100


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(clock=FakeClock(0))
        self.batches: list[int] = []

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        self.batches.append(len(buckets))
        await asyncio.sleep(0)  # a round trip: the others arrive meanwhile
        return await super().take_tokens(buckets)


async def test_concurrent_takes_share_a_round_trip() -> None:
    store = CountingStore()
    buckets = RateLimits(store, limits(), metrics=Metrics())
    waits = await asyncio.gather(*(buckets.check(f"user{index % 10}", "sync") for index in range(50)))
    assert waits == [None] * 50, "five each: within the burst"
    assert store.batches == [50], "one round trip for all of them"
    assert await buckets.check("user0", "sync") is not None, "and every one of them took its token"


@pytest.fixture
async def unreachable_store() -> AsyncIterator[Store]:
    store = RedisStore.from_url(f"redis://{LOOPBACK}:{free_port()}", timeout=0.5)  # nothing listens there
    yield store
    await store.close()


async def test_a_store_that_cannot_answer_lets_requests_through_when_failing_open(unreachable_store: Store) -> None:
    metrics = Metrics()
    buckets = RateLimits(unreachable_store, limits(fail_open=True), metrics=metrics)
    assert [await buckets.check("alice", "send") for _ in range(3)] == [None, None, None]
    assert sample(metrics, "messenger_gw_rate_limit_unevaluated_total", **{"class": "send", "policy": "open"}) == 3


async def test_a_store_that_cannot_answer_refuses_requests_when_failing_closed(unreachable_store: Store) -> None:
    metrics = Metrics()
    buckets = RateLimits(unreachable_store, limits(fail_open=False), metrics=metrics)
    with pytest.raises(StoreError):
        await buckets.check("alice", "send")
    assert sample(metrics, "messenger_gw_rate_limit_unevaluated_total", **{"class": "send", "policy": "closed"}) == 1
    assert await buckets.check("alice", "group_write") is None, "an off class asks no store"


# -- the same buckets decided at once, as the WebSocket guard asks them --------------------------------


class RecordingStore(MemoryStore):
    """A memory store on a fake clock that keeps every round trip the buckets make."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls: list[tuple[str, list[Any]]] = []

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        self.calls.append(("take", [bucket.key for bucket in buckets]))
        return await super().take_tokens(buckets)

    async def spend_tokens(self, spends: Sequence[tuple[Bucket, int, float]]) -> list[float]:
        self.calls.append(("spend", [(bucket.key, count) for bucket, count, _ in spends]))
        return await super().spend_tokens(spends)


def eager(store: Store, clock: FakeClock, metrics: Metrics, *, fail_open: bool = True) -> EagerRateLimits:
    return EagerRateLimits(store, RateLimits(store, limits(fail_open=fail_open), metrics=metrics), metrics=metrics,
                           clock=clock)  # fmt: skip


async def test_an_eager_bucket_answers_without_a_round_trip_and_spends_once_per_user_and_flush() -> None:
    clock = FakeClock(0)
    store, metrics = RecordingStore(clock), Metrics()
    buckets = eager(store, clock, metrics)
    assert [await buckets.check("alice", "send") for _ in range(3)] == [None, None, 2.0]
    assert await buckets.check("bob", "send") is None
    assert store.calls == [], "nothing asked of the store yet"
    await buckets.flush()
    [(call, spends)] = store.calls
    assert (call, sorted(spends)) == ("spend", [("gw:rate:send:{alice}", 2), ("gw:rate:send:{bob}", 1)])
    await buckets.flush()
    assert len(store.calls) == 1, "nothing new taken: nothing to spend"
    exact = RateLimits(store, limits(), metrics=metrics)
    assert await exact.check("alice", "send") == 2.0, "the REST path sees what the frames took"
    clock.advance(2)
    assert await buckets.check("alice", "send") is None
    assert await buckets.check("alice", "send") == 2.0
    assert sample(metrics, "messenger_gw_rate_limit_overshoot_total", **{"class": "send"}) == 0


async def test_a_user_who_also_sent_elsewhere_is_held_to_the_stores_bucket_and_the_excess_counted() -> None:
    clock = FakeClock(0)
    store, metrics = MemoryStore(clock=clock), Metrics()
    buckets = eager(store, clock, metrics)
    elsewhere = RateLimits(store, limits(), metrics=Metrics())  # another replica's REST path
    assert [await elsewhere.check("alice", "send") for _ in range(2)] == [None, None]
    assert await buckets.check("alice", "send") is None, "this worker has not heard yet"
    await buckets.flush()
    assert sample(metrics, "messenger_gw_rate_limit_overshoot_total", **{"class": "send"}) == 1
    wait = await buckets.check("alice", "send")
    assert wait is not None
    assert wait == pytest.approx(4.0, abs=0.002), "the store's bucket, with the frame beyond it to pay for"
    clock.advance(4)
    assert await buckets.check("alice", "send") is None


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_spend_the_store_fails_makes_the_next_frame_wait_on_the_store_when_failing_closed(
    unreachable_store: Store, fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock, metrics = FakeClock(0), Metrics()
    buckets = eager(unreachable_store, clock, metrics, fail_open=fail_open)
    assert [await buckets.check(user, "send") for user in ("alice", "carol", "dave")] == [None] * 3
    with caplog.at_level(logging.WARNING, logger="messenger_gw.moderation.rate_limit"):
        await buckets.flush()
    assert len(caplog.records) == 1, "one warning for the flush, not one per user"
    policy = "open" if fail_open else "closed"
    assert sample(metrics, "messenger_gw_rate_limit_unevaluated_total", **{"class": "send", "policy": policy}) == 3
    if fail_open:
        assert await buckets.check("alice", "send") is None
    else:
        with pytest.raises(StoreError):
            await buckets.check("alice", "send")
    assert await buckets.check("bob", "send") is None, "a user whose spend did not fail is decided here"


async def test_a_user_sending_only_here_is_refused_exactly_where_the_store_alone_would_refuse() -> None:
    # 5/s with a burst of 4 from a full bucket: the burst, then one a hair past every interval, each flush 0.05 s
    # after its take (charged from the flush, the next would wait 0.05 s more).
    settings = RateLimitSettings(classes={"send": BucketLimit(rate=5, burst=4, text="5/s:4"), "sync": None,
                                          "group_write": None, "upload": None}, fail_open=True)  # fmt: skip
    clock, metrics = FakeClock(0), Metrics()
    eager_store, exact_store = MemoryStore(clock=clock), MemoryStore(clock=clock)
    buckets = EagerRateLimits(eager_store, RateLimits(eager_store, settings, metrics=metrics), metrics=metrics,
                              clock=clock)  # fmt: skip
    exact = RateLimits(exact_store, settings, metrics=Metrics())
    eager_answers, exact_answers = [], []
    for step in range(12):
        for _ in range(4 if step == 0 else 1):
            eager_answers.append(await buckets.check("alice", "send") is None)
            exact_answers.append(await exact.check("alice", "send") is None)
        clock.advance(0.05)
        await buckets.flush()
        clock.advance(0.151)
    assert eager_answers == exact_answers
    assert all(eager_answers)
    assert sample(metrics, "messenger_gw_rate_limit_overshoot_total", **{"class": "send"}) == 0


async def test_an_exactly_emptied_bucket_counts_no_overshoot_whatever_its_interval() -> None:
    settings = RateLimitSettings(classes={"send": BucketLimit(rate=3, burst=10, text="3/s:10"), "sync": None,
                                          "group_write": None, "upload": None}, fail_open=True)  # fmt: skip
    clock, metrics = FakeClock(0), Metrics()
    store = MemoryStore(clock=clock)
    buckets = EagerRateLimits(store, RateLimits(store, settings, metrics=metrics), metrics=metrics, clock=clock)
    assert [await buckets.check("alice", "send") for _ in range(10)] == [None] * 10
    await buckets.flush()
    assert sample(metrics, "messenger_gw_rate_limit_overshoot_total", **{"class": "send"}) == 0


async def test_tokens_of_a_flush_cancelled_mid_flight_are_spent_by_the_next() -> None:
    class StalledOnceStore(RecordingStore):
        stalled = False

        async def spend_tokens(self, spends: Sequence[tuple[Bucket, int, float]]) -> list[float]:
            if not self.stalled:  # a round trip that never ends: cancelled by the shutdown
                self.stalled = True
                await asyncio.Event().wait()
            return await super().spend_tokens(spends)

    clock, metrics = FakeClock(0), Metrics()
    store = StalledOnceStore(clock)
    buckets = eager(store, clock, metrics)
    assert [await buckets.check("alice", "send") for _ in range(2)] == [None, None]
    flushing = asyncio.create_task(buckets.flush())
    await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await buckets.flush()  # the last one, at shutdown
    assert store.calls == [("spend", [("gw:rate:send:{alice}", 2)])]


async def test_the_views_of_users_whose_buckets_are_full_again_are_dropped() -> None:
    class SmallEager(EagerRateLimits):
        SWEEP_FLOOR = 4

    clock = FakeClock(0)
    store = MemoryStore(clock=clock)
    buckets = SmallEager(store, RateLimits(store, limits(), metrics=Metrics()), metrics=Metrics(), clock=clock)
    for round_ in range(5):
        for n in range(4):
            assert await buckets.check(f"user{round_}-{n}", "send") is None
        await buckets.flush()
        clock.advance(2.5)  # every bucket so far is full again
    assert len(buckets._views) <= 2 * SmallEager.SWEEP_FLOOR


# -- /im end to end ------------------------------------------------------------------------------

LIMITS = "send=30/m:2,sync=1/s:100,upload=off"


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs an imToken's exp by its clock and the gateway checks it by the real one.
    return FakeClock(time.time())


async def log_in(gateway: Gateway, user_id: str = "alice") -> GatewayClient:
    client = gateway.client()
    await client.handshake(platform_id=5)
    await client.login({"userID": user_id, "code": GOOD_CODE})
    return client


@pytest.fixture
async def alice(start_gateway: StartGateway) -> AsyncIterator[tuple[Gateway, GatewayClient]]:
    gateway = await start_gateway(PHASE="4", RATE_LIMITS=LIMITS)
    async with await log_in(gateway) as client:
        yield gateway, client


async def im(client: GatewayClient, path: str, body: Any, *, via: Gateway | None = None) -> Any:
    """A signed POST to /im<path>, through ``via`` (another replica) or the client's own gateway:
    (status, JSON body, headers)."""
    raw = orjson.dumps(body)
    headers = client.signed_headers("POST", "/im" + path, raw) | {"Content-Type": "application/json"}
    url = (via.url if via is not None else client.base_url) + "/im" + path
    async with aiohttp.ClientSession() as http, http.post(url, data=raw, headers=headers) as response:
        return response.status, orjson.loads(await response.read()), response.headers


async def test_a_burst_over_a_class_is_refused_with_retry_after_and_never_forwarded(
    alice: tuple[Gateway, GatewayClient], recorder: Recorder
) -> None:
    gateway, client = alice
    for _ in range(2):
        status, body, _ = await im(client, "/msg/send_msg", SEND_A_MESSAGE)
        assert (status, body["errCode"]) == (200, 0)
    status, body, headers = await im(client, "/msg/send_msg", SEND_A_MESSAGE)
    assert status == 429
    assert body == {"errCode": 42900, "errMsg": "Too many requests; try again later", "errDlt": ""}
    assert 1 <= int(headers["Retry-After"]) <= 2, "a token every 2 s"
    assert len(recorder.to("/msg/send_msg")) == 2
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_rate_limited_total", **{"class": "send"}) == 1
    labels = {"route": "/im/msg/send_msg", "method": "POST", "status": "429"}
    assert sample(metrics, "messenger_gw_http_requests_total", **labels) == 1


async def test_the_other_classes_and_unclassed_routes_are_unaffected(alice: tuple[Gateway, GatewayClient]) -> None:
    _, client = alice
    for _ in range(3):
        await im(client, "/msg/send_msg", SEND_A_MESSAGE)
    assert (await im(client, "/msg/send_msg", SEND_A_MESSAGE))[0] == 429
    status, body, _ = await im(client, "/msg/pull_msg_by_seq", PULL)
    assert (status, body["errCode"]) == (200, 0), "sync has its own bucket"
    status, body, _ = await im(client, "/msg/get_server_time", {})
    assert (status, body["errCode"]) == (200, 0), "a route without a class is not limited"


async def test_another_user_has_a_bucket_of_their_own(alice: tuple[Gateway, GatewayClient]) -> None:
    gateway, client = alice
    for _ in range(3):
        await im(client, "/msg/send_msg", SEND_A_MESSAGE)
    async with await log_in(gateway, "bob") as bob:
        message = SEND_A_MESSAGE | {"recvID": "bob"}
        assert [(await im(bob, "/msg/send_msg", message))[0] for _ in range(3)] == [200, 200, 429]


async def test_two_replicas_take_from_one_bucket(
    alice: tuple[Gateway, GatewayClient], start_gateway: StartGateway
) -> None:
    first, client = alice
    second = await start_gateway(PHASE="4", RATE_LIMITS=LIMITS)  # another gateway on the same redis-server
    statuses = [(await im(client, "/msg/send_msg", SEND_A_MESSAGE, via=via))[0] for via in (first, second, second)]
    assert statuses == [200, 200, 429]
    assert (await im(client, "/msg/send_msg", SEND_A_MESSAGE, via=first))[0] == 429


async def test_an_openim_sdk_client_over_the_limit_reads_the_refusal_as_openim_answers(
    start_gateway: StartGateway, recorder: Recorder
) -> None:
    gateway = await start_gateway(PHASE="4", RATE_LIMITS=LIMITS)
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        token = (await client.login({"userID": "alice", "code": GOOD_CODE}))["imToken"]
    sdk = {"token": token, "operationID": "op-sdk", "reqFuncName": "SendMessage", "Content-Type": "application/json"}
    answers = []
    for _ in range(3):
        async with (
            aiohttp.ClientSession() as http,
            http.post(gateway.url + "/im/msg/send_msg", data=orjson.dumps(SEND_A_MESSAGE), headers=sdk) as response,
        ):
            answers.append((response.status, (await response.json())["errCode"], response.headers.get("Retry-After")))
    assert answers[:2] == [(200, 0, None), (200, 0, None)]
    status, code, retry_after = answers[2]
    assert (status, code) == (200, 42900), "HTTP 200, as the SDK reads only the errCode of a 200"
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 2
    assert len(recorder.to("/msg/send_msg")) == 2


def break_bucket(redis: RedisProcess, user_id: str, rate_class: str) -> None:
    """Make the store refuse the bucket's script (a key of another type): the store fails for it alone, so
    everything else the request needs still works."""
    with redis.client() as c:
        c.hset(f"gw:rate:{rate_class}:{{{user_id}}}", "not", "a bucket")


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_the_configured_policy_decides_when_the_store_cannot_take_a_token(
    start_gateway: StartGateway, clean_redis: RedisProcess, recorder: Recorder, policy: str
) -> None:
    gateway = await start_gateway(PHASE="4", RATE_LIMITS=LIMITS, RATE_LIMIT_FAIL_POLICY=policy)
    async with await log_in(gateway) as client:
        break_bucket(clean_redis, "alice", "send")
        status, body, _ = await im(client, "/msg/send_msg", SEND_A_MESSAGE)
    if policy == "open":
        assert (status, body["errCode"]) == (200, 0)
        assert len(recorder.to("/msg/send_msg")) == 1
    else:
        assert (status, body["errCode"]) == (503, 50300)
        assert recorder.to("/msg/send_msg") == [], "refused without a word to OpenIM"
    labels = {"class": "send", "policy": policy}
    assert sample(gateway.app[METRICS], "messenger_gw_rate_limit_unevaluated_total", **labels) == 1
