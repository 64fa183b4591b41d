"""The sandbox's scenarios with the official OpenIM SDK (tests/sandbox/test_sdk.py, test_sdk_groups.py), run
again through the gateway: each user logs in through the gateway with the Python client, and the SDK takes
the login's imToken and apiAddr, the gateway's own /im, for every REST call it makes (its WebSocket still
straight to the sandbox's msg-gateway). The app's server keeps calling OpenIM itself with the admin token.

The scenarios are the sandbox's own tests, imported: only the ``im`` fixture they stand on differs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.sandbox import CodeError, FakeClock, Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, LOOPBACK, Recorder, RedisProcess, Wire, base_url, free_port, gateway_settings
from tests.sandbox.fixtures import IM, ws_url  # noqa: F401 - a fixture
from tests.sandbox.test_sdk import (  # noqa: F401 - the scenarios, and the fixture they stand on
    chat,
    test_a_rest_send_msg_reaches_the_sdk_as_a_push,
    test_a_second_login_on_the_same_platform_kicks_the_first,
    test_after_a_dropped_socket_the_sdk_reconnects_and_receives_what_it_missed,
    test_force_logout_kicks_the_live_connection,
    test_two_users_chat_read_and_answer,
)
from tests.sandbox.test_sdk_groups import (  # noqa: F401 - likewise
    test_a_friend_request_accepted_in_the_sdk_shows_in_both_friend_lists,
    test_a_group_made_in_the_sdk_carries_messages_lists_its_members_and_drops_who_quits,
    trio,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def fake_clock() -> FakeClock:
    # The sandbox signs a token's exp by its clock and the gateway checks it by the real one: let them agree.
    return FakeClock(time.time())


@dataclasses.dataclass
class ThroughGateway(IM):
    """Logins as a client of the gateway gets them; ``api_addr`` stays OpenIM's, for the app's server."""

    gateway_url: str = ""

    async def login(self, user_id: str, platform_id: int = 5) -> dict[str, object]:
        reply = await self._log_in(user_id, platform_id)
        # A second device of the user on the same platform, logging in through the gateway too.
        second = await self._log_in(user_id, platform_id)
        assert reply["apiAddr"] == self.gateway_url + "/im", "the login hands the SDK the gateway's /im"
        return {"userID": user_id, "token": reply["imToken"], "platformID": platform_id,
                "apiAddr": reply["apiAddr"], "wsAddr": self.ws_addr, "openimAddr": self.api_addr,
                "secondToken": second["imToken"]}  # fmt: skip

    async def _log_in(self, user_id: str, platform_id: int) -> dict[str, str]:
        async with GatewayClient(self.gateway_url) as client:
            await client.handshake(platform_id=platform_id)
            reply: dict[str, str] = await client.login({"userID": user_id, "code": GOOD_CODE})
        return reply


@pytest.fixture
async def im(
    wire: Wire,
    ws_url: str,  # noqa: F811 - the imported fixture
    sandbox_server: TestServer,
    clean_redis: RedisProcess,
    user_service_url: str,
) -> AsyncIterator[IM]:
    port = free_port()  # known before the gateway starts: its PUBLIC_IM_URL names it
    gateway_url = f"http://{LOOPBACK}:{port}"
    settings = gateway_settings(
        base_url(sandbox_server),
        redis_url=clean_redis.url,
        USER_SERVICE_URL=user_service_url,
        PHASE="4",
        PUBLIC_IM_URL=gateway_url + "/im",
    )
    server = TestServer(create_app(settings), host=LOOPBACK, port=port)
    await server.start_server()
    yield ThroughGateway(wire, wire.url, ws_url, await wire.admin_token(), gateway_url=gateway_url)
    await server.close()


@pytest.fixture(autouse=True)
def nothing_bypasses_the_gateway(im: IM, recorder: Recorder, sandbox: Sandbox) -> object:
    """After each scenario: every REST call with a user's token reached OpenIM through the gateway, which
    alone sets X-Request-Api, and the SDK made some."""
    yield None
    assert isinstance(im, ThroughGateway)
    by_users = [r for r in recorder.requests if "token" in r.headers and not _admin(sandbox, r.headers["token"])]
    assert by_users, "the SDK made REST calls"
    assert {r.headers.get("X-Request-Api") for r in by_users} == {im.gateway_url + "/im"}
    assert not any("reqfuncname" in map(str.lower, r.headers) for r in by_users), "reqFuncName is not forwarded"


def _admin(sandbox: Sandbox, token: str) -> bool:
    try:
        return sandbox.verify_token(token)[0].is_admin
    except CodeError:  # a token OpenIM refuses (a kicked one, say) is no admin's
        return False
