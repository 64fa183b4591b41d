"""The sandbox's scenarios with the official OpenIM SDK (tests/sandbox/test_sdk.py, test_sdk_groups.py), end to end
through a real nginx running the shipped deploy/nginx config: each user logs in through nginx with the Python client
(signed), and the SDK takes what the login hands out, the imToken, ``wsURL`` (nginx's /ws, the gateway's guard) and
``apiAddr`` (nginx's /im). The app's server keeps calling OpenIM itself with the admin token.

The scenarios are the sandbox's own tests, imported: only the ``im`` fixture they stand on differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.metrics import METRICS
from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import (
    GOOD_CODE,
    LOOPBACK,
    Recorder,
    RedisProcess,
    Wire,
    base_url,
    free_port,
    gateway_settings,
    sample,
)
from tests.im.test_sdk_scenarios import _admin
from tests.sandbox.fixtures import IM
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
from tests.test_deploy import run_nginx
from tests.ws.conftest import Received

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class ThroughNginx(IM):
    """Logins as a client behind nginx gets them; ``api_addr`` stays OpenIM's, for the app's server."""

    edge: str = ""
    gateway: TestServer | None = None

    async def login(self, user_id: str, platform_id: int = 5) -> dict[str, object]:
        reply = await self._log_in(user_id, platform_id)
        second = await self._log_in(user_id, platform_id)  # a second device on the same platform
        assert (reply["wsURL"], reply["apiAddr"]) == ("ws" + self.edge.removeprefix("http") + "/ws", self.edge + "/im")
        return {"userID": user_id, "token": reply["imToken"], "platformID": platform_id,
                "apiAddr": reply["apiAddr"], "wsAddr": reply["wsURL"], "openimAddr": self.api_addr,
                "secondToken": second["imToken"]}  # fmt: skip

    async def _log_in(self, user_id: str, platform_id: int) -> dict[str, str]:
        async with GatewayClient(self.edge) as client:
            await client.handshake(platform_id=platform_id)
            reply: dict[str, str] = await client.login({"userID": user_id, "code": GOOD_CODE})
        return reply


@pytest.fixture
def edge_port() -> int:
    return free_port()  # known before the gateway starts: its public URLs name it


@pytest.fixture
async def gateway(
    sandbox_server: TestServer, clean_redis: RedisProcess, user_service_url: str, ws_url: str, edge_port: int
) -> AsyncIterator[TestServer]:
    edge = f"{LOOPBACK}:{edge_port}"
    settings = gateway_settings(
        base_url(sandbox_server),
        redis_url=clean_redis.url,
        USER_SERVICE_URL=user_service_url,
        PHASE="4",
        PUBLIC_IM_URL=f"http://{edge}/im",
        OPENIM_WS_URL=f"ws://{edge}/ws",
        OPENIM_WS_URL_INTERNAL=ws_url,
        TRUSTED_PROXIES="127.0.0.1/32",
    )
    server = TestServer(create_app(settings), host=LOOPBACK)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def nginx(gateway: TestServer, edge_port: int, tmp_path: Path) -> Iterator[str]:
    yield from run_nginx(
        tmp_path,
        {
            "GATEWAY_UPSTREAM": base_url(gateway).removeprefix("http://"),
            "OPENIM_WS_UPSTREAM": "127.0.0.1:9",  # the direct route stays commented out
            "LISTEN": f"{LOOPBACK}:{edge_port}",
            "OPENIM_NETWORK": "127.0.0.1/32",
        },
    )


@pytest.fixture
async def im(wire: Wire, ws_url: str, nginx: str, gateway: TestServer) -> IM:
    return ThroughNginx(wire, wire.url, ws_url, await wire.admin_token(), edge=nginx, gateway=gateway)


@pytest.fixture(autouse=True)
def everything_passed_nginx_and_the_gateway(
    im: IM, received: Received, recorder: Recorder, sandbox: Sandbox
) -> Iterator[None]:
    """After each scenario: the SDK's WebSocket requests reached OpenIM's msg-gateway, each relayed by the guard,
    and its REST calls reached OpenIM through the gateway's /im behind nginx (which alone sets X-Request-Api)."""
    yield
    assert isinstance(im, ThroughNginx)
    assert im.gateway is not None
    by_users = [r for r in recorder.requests if "token" in r.headers and not _admin(sandbox, r.headers["token"])]
    assert by_users, "the SDK made REST calls"
    assert {r.headers.get("X-Request-Api") for r in by_users} == {im.edge + "/im"}
    assert received.frames, "the SDK made WebSocket requests"
    relayed = sum(
        sample(im.gateway.app[METRICS], "messenger_gw_ws_frames_total", req_identifier=str(ident), verdict="relayed")
        for ident in (1001, 1002, 1003, 1004, 1005, 1006, 1007, 2003, 2004, 2005)
    )
    assert relayed == len(received.frames), "no frame reached OpenIM past the guard"
