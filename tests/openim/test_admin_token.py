"""The admin-token manager: cache window, refresher, single flight, retry on token errors."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from messenger_gw.metrics import Metrics
from messenger_gw.openim import AdminTokenManager
from messenger_gw.openim.client import NewUser, OpenIMClient, OpenIMConnectError, TokenKickedError
from messenger_gw.sandbox import FakeClock, Sandbox, TokenState
from messenger_gw.settings import Secret
from tests.conftest import LOOPBACK, OpenIMAt, free_port, sample

FETCH = "/auth/get_admin_token"


def manager(client: OpenIMClient, metrics: Metrics, **options: object) -> AdminTokenManager:
    return AdminTokenManager(client, Secret("openIM123"), "imAdmin", metrics=metrics, **options)  # type: ignore[arg-type]


def refreshes(metrics: Metrics, outcome: str) -> float:
    return sample(metrics, "messenger_gw_admin_token_refreshes_total", outcome=outcome)


async def test_token_is_reused_within_its_window(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics, fake_clock: FakeClock
) -> None:
    tokens = manager(openim_client, metrics, max_age=240, clock=fake_clock)
    first = await tokens.get()
    fake_clock.advance(239)
    assert await tokens.get() == first
    assert sandbox.calls[FETCH] == 1


async def test_token_older_than_max_age_is_not_used(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics, fake_clock: FakeClock
) -> None:
    tokens = manager(openim_client, metrics, max_age=240, clock=fake_clock)
    await tokens.get()
    fake_clock.advance(240)
    assert tokens.current() is None, "a probe sees no token rather than an old one"
    await tokens.get()
    assert sandbox.calls[FETCH] == 2


async def test_refresher_replaces_the_token_before_it_ages_out(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics
) -> None:
    tokens = manager(openim_client, metrics, max_age=2.0, refresh_at=0.25, clock=time.monotonic)
    await tokens.start()
    try:
        async with asyncio.timeout(5):
            await tokens.get()  # joins the refresher's first fetch
            # Until the second fetch is answered and taken: OpenIM seeing it is not yet the token replaced.
            while refreshes(metrics, "ok") < 2:
                assert tokens.current() is not None, "the cached token aged out before the refresher replaced it"
                await asyncio.sleep(0.01)
        assert tokens.current() is not None
        assert sandbox.calls[FETCH] == 2
    finally:
        await tokens.stop()


async def test_concurrent_callers_share_one_fetch(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics
) -> None:
    tokens = manager(openim_client, metrics)
    got = await asyncio.gather(*(tokens.get() for _ in range(50)))
    assert len(set(got)) == 1
    assert sandbox.calls[FETCH] == 1


async def test_a_token_error_fetches_once_more_and_retries(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics, fake_clock: FakeClock
) -> None:
    tokens = manager(openim_client, metrics, clock=fake_clock)
    stale = await tokens.get()
    sandbox.tokens[stale].state = TokenState.KICKED
    fake_clock.advance(1)  # a new token must differ from the kicked one
    await tokens.call(lambda token: openim_client.user_register(token, [NewUser("u1", "A")], operation_id="t"))
    assert "u1" in sandbox.users
    assert sandbox.calls[FETCH] == 2
    assert sandbox.calls["/user/user_register"] == 2


async def test_a_second_token_error_is_raised_not_retried_again(
    openim_client: OpenIMClient, sandbox: Sandbox, metrics: Metrics
) -> None:
    tokens = manager(openim_client, metrics)
    attempts = 0

    async def always_kicked(token: str) -> None:
        nonlocal attempts
        attempts += 1
        raise TokenKickedError(1506, "TokenKickedError")

    with pytest.raises(TokenKickedError):
        await tokens.call(always_kicked)
    assert attempts == 2
    assert sandbox.calls[FETCH] == 2


async def test_unreachable_openim_gives_a_clear_error_and_counts_it(openim_at: OpenIMAt) -> None:
    metrics = Metrics()
    url = f"http://{LOOPBACK}:{free_port()}"
    tokens = manager(openim_at(url, metrics=metrics), metrics)
    with pytest.raises(OpenIMConnectError, match=re.escape(f"cannot connect to OpenIM at {url}")):
        await tokens.get()
    assert refreshes(metrics, "error") == 1
    assert tokens.current() is None


async def test_max_age_must_stay_under_openims_grace_period(openim_client: OpenIMClient, metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="300"):
        manager(openim_client, metrics, max_age=300)
