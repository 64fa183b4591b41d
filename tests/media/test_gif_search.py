"""GIF search end to end: a gateway in front of GIPHY- and KLIPY-shaped stand-ins, over a real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from messenger_gw import keys
from messenger_gw.metrics import METRICS
from messenger_gw.moderation import BANS, Ban
from messenger_gw.sandbox import FakeClock
from messenger_gw.sdk import GatewayClient
from messenger_gw.sdk.client import Response
from tests.conftest import ENVELOPE_KEYS, GOOD_CODE, Gateway, RedisProcess, StartGateway, sample
from tests.media.conftest import LogIn
from tests.media.standins import GIPHY_KEY, KLIPY_KEY, GiphyStandIn, KlipyStandIn

StartWith = Callable[..., Awaitable[Gateway]]
PICTURE_KEYS = {"uuid", "type", "size", "width", "height", "url"}


async def get(client: GatewayClient, path: str) -> Response:
    return await client.request("GET", path)


def gateway_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every record the gateway logged, its extras included; not the test servers' own (the stand-in's
    access lines show the URL it was asked, key and all, as the provider's own logs would)."""
    records = [r for r in caplog.records if r.name not in ("aiohttp.access", "aiohttp.server")]
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records)


def envelope(response: Response, status: int, code: int) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert (response.status, set(body), body["errCode"]) == (status, ENVELOPE_KEYS, code), body
    return body


# -- the answer -----------------------------------------------------------------------------------


async def test_giphy_search_answers_one_provider_neutral_page_with_the_renditions_a_client_sends(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    standin, _ = giphy
    gateway = await giphy_gateway(GIF_RATING="pg")
    alice = await log_in(gateway, "alice")
    response = await get(alice, "/gifs/search?q=funny%20cats&limit=3")
    assert response.status == 200, response.body
    answer = response.json()
    assert set(answer) == {"provider", "results", "next"}
    assert (answer["provider"], answer["next"]) == ("giphy", "3")
    assert [r["id"] for r in answer["results"]] == ["g0", "g1", "g2"]
    first = answer["results"][0]
    assert set(first) == {"id", "title", "picture"}
    assert first["title"] == "Cat 0 GIF"
    assert first["picture"] == {
        "sourcePicture": {"uuid": "giphy-g0-source", "type": "image/gif", "size": 1_000_000, "width": 480,
                          "height": 270, "url": "https://media.giphy.example/media/g0/giphy.gif"},
        "bigPicture": {"uuid": "giphy-g0-big", "type": "image/gif", "size": 900_000, "width": 480, "height": 270,
                       "url": "https://media.giphy.example/media/g0/giphy-downsized.gif"},
        "snapshotPicture": {"uuid": "giphy-g0-snapshot", "type": "image/gif", "size": 200_000, "width": 200,
                            "height": 113, "url": "https://media.giphy.example/media/g0/200w.gif"},
    }  # fmt: skip
    [seen] = standin.seen
    assert seen.path == "/v1/gifs/search"
    assert seen.query == {"api_key": GIPHY_KEY, "q": "funny cats", "limit": "3", "offset": "0", "rating": "pg"}


async def test_giphy_pages_follow_the_next_cursor_until_the_last(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    standin, _ = giphy
    standin.total = 7
    alice = await log_in(await giphy_gateway(), "alice")
    first = (await get(alice, "/gifs/trending?limit=4")).json()
    assert ([r["id"] for r in first["results"]], first["next"]) == (["g0", "g1", "g2", "g3"], "4")
    second = (await get(alice, f"/gifs/trending?limit=4&pos={first['next']}")).json()
    assert ([r["id"] for r in second["results"]], second["next"]) == (["g4", "g5", "g6"], None)
    assert [s.query["offset"] for s in standin.seen] == ["0", "4"]
    assert all(s.path == "/v1/gifs/trending" and "q" not in s.query for s in standin.seen)


async def test_klipy_answers_the_same_shape_without_its_advertisements(
    klipy_gateway: StartWith, klipy: tuple[KlipyStandIn, str], log_in: LogIn
) -> None:
    standin, _ = klipy
    alice = await log_in(await klipy_gateway(GIF_RATING="pg-13"), "alice")
    answer = (await get(alice, "/gifs/search?q=cats&limit=8")).json()
    assert (answer["provider"], answer["next"]) == ("klipy", "2")
    assert [r["id"] for r in answer["results"]] == [str(1000 + n) for n in range(8)], "the ad is dropped"
    picture = answer["results"][0]["picture"]
    assert set(picture) == {"sourcePicture", "bigPicture", "snapshotPicture"}
    assert all(set(p) == PICTURE_KEYS for p in picture.values())
    assert picture["sourcePicture"]["url"] == "https://static.klipy.example/ii/0/hd.gif"
    assert (picture["bigPicture"]["url"], picture["bigPicture"]["width"]) == (
        "https://static.klipy.example/ii/0/md.gif",
        320,
    )
    assert picture["snapshotPicture"]["url"] == "https://static.klipy.example/ii/0/sm.gif"
    trending = (await get(alice, "/gifs/trending?limit=8&pos=2")).json()
    assert [r["id"] for r in trending["results"]] == [str(1000 + n) for n in range(8, 16)]
    search, page_two = standin.seen
    assert search.path == f"/api/v1/{KLIPY_KEY}/gifs/search"
    assert search.query == {
        "q": "cats", "page": "1", "per_page": "8", "customer_id": "messenger-gw", "content_filter": "low"
    }  # fmt: skip
    assert (page_two.path.endswith("/gifs/trending"), page_two.query["page"]) == (True, "2")


# -- bounds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "q"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=" + "a" * 51, "q"),
        ("q=a%0Ab", "q"),
        ("q=a&q=b", "q"),
        ("q=a&limit=0", "limit"),
        ("q=a&limit=51", "limit"),
        ("q=a&limit=ten", "limit"),
        ("q=a&limit=-1", "limit"),
        ("q=a&pos=-4", "pos"),
        ("q=a&pos=5000", "pos"),
        ("q=a&pos=" + "1" * 20, "pos"),
    ],
)
async def test_a_query_out_of_bounds_is_refused_before_the_provider(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn, query: str, field: str
) -> None:
    alice = await log_in(await giphy_gateway(), "alice")
    body = envelope(await get(alice, f"/gifs/search?{query}"), 400, 40002)
    assert body["errMsg"].startswith(f"{field}:")
    assert giphy[0].seen == []


async def test_klipy_page_sizes_are_its_own(
    klipy_gateway: StartWith, klipy: tuple[KlipyStandIn, str], log_in: LogIn
) -> None:
    alice = await log_in(await klipy_gateway(), "alice")
    body = envelope(await get(alice, "/gifs/trending?limit=5"), 400, 40002)
    assert body["errMsg"] == "limit: a whole number from 8 to 50"
    envelope(await get(alice, "/gifs/trending?pos=0"), 400, 40002)
    assert klipy[0].seen == []


async def test_a_trending_offset_beyond_giphys_bound_is_refused(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    alice = await log_in(await giphy_gateway(), "alice")
    envelope(await get(alice, "/gifs/trending?pos=500"), 400, 40002)
    assert (await get(alice, "/gifs/search?q=a&pos=500")).status == 200


# -- the shared cache -----------------------------------------------------------------------------


async def test_a_popular_query_reaches_the_provider_once_across_replicas(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    standin, _ = giphy
    standin.delay = 0.3  # every request below arrives while the first fetch is under way
    one, two = await giphy_gateway(), await giphy_gateway()
    clients = [await log_in(one, f"user{n}") for n in range(4)] + [await log_in(two, f"peer{n}") for n in range(4)]
    responses = await asyncio.gather(*(get(c, "/gifs/search?q=cats&limit=5") for c in clients for _ in range(3)))
    assert {r.status for r in responses} == {200}
    assert len({r.body for r in responses}) == 1
    assert len(standin.seen) == 1
    later = await get(await log_in(two, "late"), "/gifs/search?q=cats&limit=5")
    assert (later.status, len(standin.seen)) == (200, 1), "answered from the store"
    fetched = sum(sample(gw.app[METRICS], "messenger_gw_gif_requests_total", provider="giphy", outcome="fetched")
                  for gw in (one, two))  # fmt: skip
    assert fetched == 1


async def test_each_query_rating_and_page_is_its_own_cache_entry_and_expires(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn, clean_redis: RedisProcess
) -> None:
    standin, _ = giphy
    alice = await log_in(await giphy_gateway(GIF_CACHE_TTL="1"), "alice")
    for path in ("/gifs/search?q=cats", "/gifs/search?q=dogs", "/gifs/search?q=cats&limit=5",
                 "/gifs/search?q=cats&pos=24", "/gifs/trending", "/gifs/search?q=cats", "/gifs/trending"):  # fmt: skip
        assert (await get(alice, path)).status == 200
    assert len(standin.seen) == 5
    with clean_redis.client() as c:
        ttls = [c.pttl(name) for name in c.scan_iter(keys.gif_page("*"))]
    assert len(ttls) == 5
    assert all(0 < ttl <= 1000 for ttl in ttls)
    await asyncio.sleep(1.1)
    await get(alice, "/gifs/trending")
    assert len(standin.seen) == 6


async def test_a_failed_fetch_is_not_kept(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    standin, _ = giphy
    alice = await log_in(await giphy_gateway(), "alice")
    standin.mode = "error"
    envelope(await get(alice, "/gifs/trending"), 502, 50201)
    standin.mode = "ok"
    assert (await get(alice, "/gifs/trending")).status == 200
    assert len(standin.seen) == 2


def the_only_page_key(redis: RedisProcess) -> str:
    with redis.client() as c:
        [name] = [n for n in c.scan_iter(keys.gif_page("*")) if not n.endswith(b"lock")]
    return bytes(name).decode()


async def test_a_replica_waits_for_the_answer_another_replica_is_fetching(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn, clean_redis: RedisProcess
) -> None:
    standin, _ = giphy
    alice = await log_in(await giphy_gateway(), "alice")
    fetched = (await get(alice, "/gifs/trending?limit=2")).body
    page_key = the_only_page_key(clean_redis)
    with clean_redis.client() as c:
        c.delete(page_key)
        c.set(page_key + ":fetch-lock", b"", px=5000)  # another replica is asking the provider
    waiting = asyncio.ensure_future(get(alice, "/gifs/trending?limit=2"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    with clean_redis.client() as c:
        c.set(page_key, b'{"provider":"giphy","results":[],"next":null}', px=60_000)  # its answer lands
    response = await waiting
    assert (response.status, response.json()) == (200, {"provider": "giphy", "results": [], "next": None})
    assert len(standin.seen) == 1, "only the first request reached the provider"
    assert fetched != response.body


async def test_a_lock_left_by_a_replica_that_died_expires_and_a_waiter_asks_itself(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn, clean_redis: RedisProcess
) -> None:
    standin, _ = giphy
    alice = await log_in(await giphy_gateway(), "alice")
    await get(alice, "/gifs/trending?limit=2")
    page_key = the_only_page_key(clean_redis)
    with clean_redis.client() as c:
        c.delete(page_key)
        c.set(page_key + ":fetch-lock", b"", px=700)
    started = asyncio.get_running_loop().time()
    response = await get(alice, "/gifs/trending?limit=2")
    assert response.status == 200
    assert asyncio.get_running_loop().time() - started >= 0.6
    assert len(standin.seen) == 2
    with clean_redis.client() as c:
        assert c.exists(page_key), "stored"
        assert not c.exists(page_key + ":fetch-lock"), "and the lock let go"


# -- the provider's failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("error", 502, 50201),
        ("refuse", 502, 50201),
        ("garbage", 502, 50201),
        ("redirect", 502, 50201),
        ("synthetic", 502, 50201),
        ("huge", 502, 50201),
        ("slow", 504, 50401),
    ],
)
async def test_a_provider_failure_is_the_gateways_envelope_and_never_shows_the_key(
    giphy_gateway: StartWith,
    giphy: tuple[GiphyStandIn, str],
    log_in: LogIn,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    status: int,
    code: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    standin, _ = giphy
    gateway = await giphy_gateway(GIF_TIMEOUT="0.5")
    alice = await log_in(gateway, "alice")
    standin.mode = mode
    response = await get(alice, "/gifs/search?q=cats")
    body = envelope(response, status, code)
    assert GIPHY_KEY not in response.body.decode() + str(response.headers)
    assert body["errDlt"] == ""
    assert len(standin.seen) == 1, "a redirect is not followed"
    assert GIPHY_KEY not in gateway_logs(caplog)
    outcome = "provider_timeout" if mode == "slow" else "provider_error"
    assert sample(gateway.app[METRICS], "messenger_gw_gif_requests_total", provider="giphy", outcome=outcome) == 1


@pytest.mark.parametrize("mode", ["error", "no_result", "slow", "garbage"])
async def test_klipys_key_in_the_path_never_reaches_answers_or_logs(
    klipy_gateway: StartWith,
    klipy: tuple[KlipyStandIn, str],
    log_in: LogIn,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    standin, _ = klipy
    alice = await log_in(await klipy_gateway(GIF_TIMEOUT="0.5"), "alice")
    standin.mode = mode
    response = await get(alice, "/gifs/trending")
    assert response.status in (502, 504)
    logged = gateway_logs(caplog)
    for form in (KLIPY_KEY, quote(KLIPY_KEY, safe="")):
        assert form not in response.body.decode() + logged


async def test_an_unreachable_provider_is_502_without_the_key(
    start_gateway: StartGateway, log_in: LogIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(GIF_API_KEY=GIPHY_KEY, GIF_API_URL="http://127.0.0.1:9", GIF_TIMEOUT="1")
    response = await get(await log_in(gateway, "alice"), "/gifs/search?q=cats")
    envelope(response, 502, 50201)
    assert GIPHY_KEY not in gateway_logs(caplog)


# -- who may search -----------------------------------------------------------------------------------


async def test_gif_search_is_for_logged_in_unbanned_users(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    gateway = await giphy_gateway()
    async with gateway.client() as anonymous:
        raw = await anonymous._send("GET", "/gifs/search?q=cats", b"", {})  # no credentials at all
        envelope(raw, 401, 40100)
        await anonymous.handshake(platform_id=5)  # a session, not logged in
        envelope(await get(anonymous, "/gifs/search?q=cats"), 401, 40100)
    alice = await log_in(gateway, "alice")
    await gateway.app[BANS].put(Ban("alice", "spam", "test", 0, None), now=0)
    envelope(await get(alice, "/gifs/search?q=cats"), 403, 40301)
    assert giphy[0].seen == []


async def test_each_user_has_a_rate_of_their_own(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], log_in: LogIn
) -> None:
    gateway = await giphy_gateway(RATE_LIMITS="gifs=1/m:3")  # a bucket of 3, one more a minute
    alice, bob = await log_in(gateway, "alice"), await log_in(gateway, "bob")
    for path in ("/gifs/trending", "/gifs/search?q=cats", "/gifs/trending"):
        assert (await get(alice, path)).status == 200
    refused = await get(alice, "/gifs/search?q=dogs")
    envelope(refused, 429, 42900)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await get(bob, "/gifs/trending")).status == 200
    assert [s.path for s in giphy[0].seen] == ["/v1/gifs/trending", "/v1/gifs/search"], "refused before the cache"
    assert sample(gateway.app[METRICS], "messenger_gw_rate_limited_total", **{"class": "gifs"}) == 1


async def test_without_a_key_gif_search_is_off_and_says_so(start_gateway: StartGateway, log_in: LogIn) -> None:
    gateway = await start_gateway()
    alice = await log_in(gateway, "alice")
    for path in ("/gifs/search?q=cats", "/gifs/trending"):
        body = envelope(await get(alice, path), 404, 40401)
        assert body["errMsg"] == "GIF search is off on this gateway"


async def test_an_openim_sdk_clients_imtoken_is_accepted_as_on_im_with_errors_as_openim_answers_them(
    giphy_gateway: StartWith, giphy: tuple[GiphyStandIn, str], fake_clock: FakeClock
) -> None:
    fake_clock.advance(time.time() - fake_clock())  # the sandbox signs exp by its clock, the gateway checks by time()
    gateway = await giphy_gateway()
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        im_token = (await client.login({"userID": "alice", "code": GOOD_CODE}))["imToken"]
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/gifs/trending?limit=2", headers={"token": im_token}) as response:
            assert response.status == 200
            assert [r["id"] for r in (await response.json())["results"]] == ["g0", "g1"]
        async with http.get(gateway.url + "/gifs/search?q=", headers={"token": im_token}) as response:
            body = await response.json()
            assert (response.status, body["errCode"]) == (200, 40002), "an SDK reads the errCode of a 200 only"
        async with http.get(gateway.url + "/gifs/trending", headers={"token": "not-a-token"}) as response:
            assert (response.status, (await response.json())["errCode"]) == (200, 40100)
        async with http.get(gateway.url + "/stickers/packs", headers={"token": im_token}) as response:
            assert (response.status, await response.json()) == (200, {"packs": []})
