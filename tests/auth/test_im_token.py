"""The imToken verifier on its own, as the WebSocket guard uses it: a token string in, a caller or a refusal out.

The gateway runs in production mode over the sandbox and a real redis-server; tokens come from logins
through the gateway, or are signed here as OpenIM signs them.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from messenger_gw import keys
from messenger_gw.auth import IM_TOKEN_REASONS, IM_TOKEN_VERIFIER, ImTokenRejected, ImTokenVerifier
from messenger_gw.moderation import Ban
from messenger_gw.openim import IM_TOKENS
from messenger_gw.sandbox import FakeClock, Sandbox
from messenger_gw.store import STORE
from tests.conftest import GOOD_CODE, Gateway, RedisProcess, StartGateway

SECRET = "openIM123"  # what gateway_settings gives OPENIM_SECRET, as OpenIM's default


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs exp by its clock and the gateway checks it by the real one: let them agree.
    return FakeClock(time.time())


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


def verifier(gateway: Gateway) -> ImTokenVerifier:
    return gateway.app[IM_TOKEN_VERIFIER]


async def log_in(gateway: Gateway, user_id: str, platform_id: int = 5) -> str:
    async with gateway.client() as client:
        await client.handshake(platform_id=platform_id)
        reply = await client.login({"userID": user_id, "code": GOOD_CODE})
    token: str = reply["imToken"]
    return token


def openim_token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    """A token signed as OpenIM signs them (its default secret is 9 bytes: PyJWT's warning is beside the point)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=algorithm)


def claims(user_id: str, platform_id: int = 5, *, expires_in: float = 86400) -> dict[str, Any]:
    now = int(time.time())
    return {"UserID": user_id, "PlatformID": platform_id, "exp": int(now + expires_in), "iat": now - 5}


def store_token(redis: RedisProcess, user_id: str, platform_id: int, token: str) -> None:
    """As login stores a token: so that only what the test changed about the token is wrong with it."""
    value = orjson.dumps({"token": token, "expiresAt": int(time.time()) + 86400})
    with redis.client() as c:
        c.hset(keys.im_token(user_id), str(platform_id), value)


async def rejected(gateway: Gateway, token: str) -> ImTokenRejected:
    with pytest.raises(ImTokenRejected) as refusal:
        await verifier(gateway).verify(token)
    return refusal.value


async def test_a_token_handed_out_at_login_stands_for_its_user_and_platform(gateway: Gateway) -> None:
    token = await log_in(gateway, "alice", 7)
    caller = await verifier(gateway).verify(token)
    assert (caller.user_id, caller.platform_id, caller.via) == ("alice", 7, "im_token")
    assert caller.im_token == token
    assert token not in repr(caller), "the token is kept out of the caller's repr, and so out of logs"


@pytest.mark.parametrize(
    ("make", "reason", "openim_code"),
    [
        (lambda: openim_token(claims("ann"), secret="another-secret"), "im_token_bad_signature", 1505),
        (lambda: openim_token(claims("ann"), algorithm="HS512"), "im_token_bad_signature", 1505),
        (lambda: jwt.encode(claims("ann"), "", algorithm="none"), "im_token_bad_signature", 1505),
        (lambda: openim_token(claims("ann", expires_in=-1)), "im_token_expired", 1501),
        (lambda: openim_token(claims("ann", platform_id=10)), "im_token_platform", 1502),
        (lambda: openim_token(claims("ann") | {"PlatformID": "5"}), "im_token_malformed", 1503),
        (lambda: openim_token(claims("ann") | {"PlatformID": True}), "im_token_malformed", 1503),
        (lambda: openim_token(claims("ann") | {"UserID": "ann/../bob"}), "im_token_malformed", 1503),
        (lambda: openim_token({k: v for k, v in claims("ann").items() if k != "exp"}), "im_token_malformed", 1503),
        (lambda: "abc", "im_token_malformed", 1503),
        (lambda: "", "im_token_malformed", 1503),
        (lambda: "é" * 10, "im_token_malformed", 1503),
        (lambda: "a" * 5000, "im_token_malformed", 1503),
    ],
    ids=[
        "wrong-secret",
        "hs512",
        "alg-none",
        "expired",
        "admin-platform",
        "platform-string",
        "platform-bool",
        "bad-user-id",
        "no-exp",
        "not-a-jwt",
        "empty",
        "not-ascii",
        "too-long",
    ],
)
async def test_a_token_wrong_in_itself_is_refused_even_when_it_is_the_stored_one(
    gateway: Gateway, clean_redis: RedisProcess, make: Callable[[], str], reason: str, openim_code: int
) -> None:
    token = make()
    store_token(clean_redis, "ann", 5, token)
    refusal = await rejected(gateway, token)
    assert (refusal.reason, refusal.openim_code) == (reason, openim_code)
    assert refusal.reason in IM_TOKEN_REASONS


async def test_a_token_replaced_by_a_newer_login_is_refused_at_once(
    gateway: Gateway, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    old = await log_in(gateway, "bea", 2)
    assert (await verifier(gateway).verify(old)).user_id == "bea"  # remembered as verified, and as stored
    sandbox.kick("bea", 2)  # so the next login mints: OpenIM no longer takes the stored one
    fake_clock.advance(1)
    new = await log_in(gateway, "bea", 2)
    assert new != old
    refusal = await rejected(gateway, old)
    assert (refusal.reason, refusal.user_id) == ("im_token_replaced", "bea")
    assert (await verifier(gateway).verify(new)).user_id == "bea"


async def test_a_forced_out_users_token_is_refused(gateway: Gateway) -> None:
    token = await log_in(gateway, "cid")
    await verifier(gateway).verify(token)
    await gateway.app[IM_TOKENS].forget("cid")  # what force logout and ban do to stored tokens
    assert (await rejected(gateway, token)).reason == "im_token_revoked"


async def test_a_token_the_gateway_never_handed_out_is_refused(gateway: Gateway) -> None:
    token = openim_token(claims("dan"))  # a good signature: OpenIM would take it
    assert (await rejected(gateway, token)).reason == "im_token_revoked"


async def test_a_banned_users_token_is_refused_as_banned(gateway: Gateway, clean_redis: RedisProcess) -> None:
    token = await log_in(gateway, "eve")
    await verifier(gateway).verify(token)
    from messenger_gw.moderation import BANS

    await gateway.app[BANS].put(Ban("eve", "spam", "test", int(time.time()), None), now=time.time())
    refusal = await rejected(gateway, token)
    assert (refusal.reason, refusal.openim_code, refusal.user_id) == ("im_token_banned", 1506, "eve")


class CountingStore:
    """Counts the reads the gateway's store serves, by wrapping them on the live store."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> None:
        self.reads = 0
        store = gateway.app[STORE]
        for name in ("get", "hget", "hgetall"):
            original = getattr(store, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.reads += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(store, name, counted)


async def test_the_warm_path_reads_no_store(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    token = await log_in(gateway, "fay")
    await verifier(gateway).verify(token)
    store = CountingStore(monkeypatch, gateway)
    for _ in range(3):
        assert (await verifier(gateway).verify(token)).user_id == "fay"
    assert store.reads == 0


@pytest.fixture
async def replicas(start_gateway: StartGateway) -> tuple[Gateway, Gateway]:
    return await start_gateway(), await start_gateway()


async def test_a_token_replaced_through_one_replica_is_refused_by_the_other(
    replicas: tuple[Gateway, Gateway], sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    replica_a, replica_b = replicas
    old = await log_in(replica_a, "gus", 3)
    assert (await verifier(replica_b).verify(old)).user_id == "gus"  # B remembers it as the stored one
    sandbox.kick("gus", 3)
    fake_clock.advance(1)
    await log_in(replica_a, "gus", 3)  # mints on A
    async with asyncio.timeout(1):  # the invalidation's trip through redis, not a cache's expiry
        while await refusal_of(replica_b, old) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await refusal_of(replica_b, old) == "im_token_replaced"


async def refusal_of(gateway: Gateway, token: str) -> str | None:
    try:
        await verifier(gateway).verify(token)
    except ImTokenRejected as refusal:
        return refusal.reason
    return None


def test_every_refusal_reason_is_a_documented_metric_label() -> None:
    documented = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for reason in [*IM_TOKEN_REASONS, "im_token_disabled"]:
        assert f"`{reason}`" in documented, reason
