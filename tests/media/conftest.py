"""Fixtures of the media tests: the GIF providers' stand-ins, gateways over them, logged-in clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, LOOPBACK, Gateway, StartGateway, base_url
from tests.media.standins import GIPHY_KEY, KLIPY_KEY, GiphyStandIn, KlipyStandIn

LogIn = Callable[[Gateway, str], Awaitable[GatewayClient]]


@pytest.fixture
async def giphy() -> AsyncIterator[tuple[GiphyStandIn, str]]:
    standin = GiphyStandIn()
    server = TestServer(standin.app(), host=LOOPBACK)
    await server.start_server()
    yield standin, base_url(server)
    await server.close()


@pytest.fixture
async def klipy() -> AsyncIterator[tuple[KlipyStandIn, str]]:
    standin = KlipyStandIn()
    server = TestServer(standin.app(), host=LOOPBACK)
    await server.start_server()
    yield standin, base_url(server)
    await server.close()


@pytest.fixture
def giphy_gateway(start_gateway: StartGateway, giphy: tuple[GiphyStandIn, str]) -> Callable[..., Awaitable[Gateway]]:
    """``await giphy_gateway(**settings)``: a gateway searching the GIPHY stand-in."""

    async def start(**overrides: str) -> Gateway:
        settings = {"GIF_PROVIDER": "giphy", "GIF_API_KEY": GIPHY_KEY, "GIF_API_URL": giphy[1]}
        return await start_gateway(**(settings | overrides))

    return start


@pytest.fixture
def klipy_gateway(start_gateway: StartGateway, klipy: tuple[KlipyStandIn, str]) -> Callable[..., Awaitable[Gateway]]:
    async def start(**overrides: str) -> Gateway:
        settings = {"GIF_PROVIDER": "klipy", "GIF_API_KEY": KLIPY_KEY, "GIF_API_URL": klipy[1]}
        return await start_gateway(**(settings | overrides))

    return start


@pytest.fixture
async def log_in() -> AsyncIterator[LogIn]:
    """``await log_in(gateway, userID)``: a client with a logged-in session; closed after the test."""
    clients: list[GatewayClient] = []

    async def log_in(gateway: Gateway, user_id: str) -> GatewayClient:
        client = gateway.client()
        clients.append(client)
        await client.handshake(platform_id=5)
        await client.login({"userID": user_id, "code": GOOD_CODE})
        return client

    yield log_in
    for client in clients:
        await client.close()
