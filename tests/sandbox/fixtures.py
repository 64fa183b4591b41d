"""Fixtures for the sandbox's msg-gateway: its WebSocket server beside the REST one, and users.

Import the fixtures into a test module (``from .sandbox_fixtures import im, ws_url``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from messenger_gw.sandbox import Sandbox, create_sandbox_ws_app
from tests.conftest import LOOPBACK, Wire, base_url


@pytest.fixture
async def ws_url(sandbox: Sandbox) -> AsyncIterator[str]:
    """The sandbox's msg-gateway on a loopback port, sharing the sandbox with ``sandbox_server``."""
    server = TestServer(create_sandbox_ws_app(sandbox), host=LOOPBACK)
    await server.start_server()
    yield "ws" + base_url(server).removeprefix("http")
    await server.close()


@dataclasses.dataclass
class IM:
    """One sandboxed OpenIM: where the SDK finds it, and tokens minted the way the app server would."""

    wire: Wire
    api_addr: str
    ws_addr: str
    admin: str

    async def register(self, *user_ids: str) -> None:
        users = [{"userID": u, "nickname": u.title()} for u in user_ids]
        await self.wire.ok("/user/user_register", {"users": users}, token=self.admin)

    async def token(self, user_id: str, platform_id: int = 5) -> str:
        return await self.wire.user_token(self.admin, user_id, platform_id)

    async def login(self, user_id: str, platform_id: int = 5) -> dict[str, object]:
        """What an SDK needs to log ``user_id`` in."""
        token = await self.token(user_id, platform_id)
        return {"userID": user_id, "token": token, "platformID": platform_id,
                "apiAddr": self.api_addr, "wsAddr": self.ws_addr}  # fmt: skip


@pytest.fixture
async def im(wire: Wire, ws_url: str) -> IM:
    return IM(wire, wire.url, ws_url, await wire.admin_token())
