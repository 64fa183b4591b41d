"""CORS: the gateway's own origin allowlist on /auth/*, /im/* and /ws, never OpenIM's ``*`` answers.

The upstream is the sandbox, which answers every request with OpenIM v3.8.3's ``Access-Control-*``
headers (``tools`` mw/gin.go ``CorsHandler``), as the first test checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from messenger_gw.edge.cors import ALLOWED_HEADERS
from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from messenger_gw.settings import ConfigError, Settings
from tests.conftest import GOOD_CODE, Gateway, Recorder, StartGateway, base_url

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
ALLOWED = ["Signature", "Signature-Input", "Content-Digest", "Authorization", "token", "operationID",
           "reqFuncName", "Content-Type", "X-Request-ID", "X-Platform-ID"]  # fmt: skip


def access_control(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    """Every Access-Control-* header of an answer, each with all its values (a duplicate would show)."""
    names = {name.lower() for name in headers if name.lower().startswith("access-control-")}
    return {name: headers.getall(name) for name in sorted(names)}


async def request(
    url: str, method: str, path: str, *, headers: dict[str, str], body: bytes = b""
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url + path, data=body, headers=headers) as answer:
        raw = await answer.read()
        json = raw and answer.content_type == "application/json"
        return answer.status, orjson.loads(raw) if json else raw or None, answer.headers


async def signed(
    client: GatewayClient, path: str, body: Any, origin: str | None, *, via: str | None = None
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    raw = orjson.dumps(body)
    headers = client.signed_headers("POST", path, raw) | {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    return await request(via or client.base_url, "POST", path, headers=headers, body=raw)


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(PHASE="4", CORS_ALLOWED_ORIGINS=f"{APP}, http://localhost:8081")


@pytest.fixture
async def alice(gateway: Gateway) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        yield client


async def test_openim_answers_every_origin_with_wildcards(sandbox_server: TestServer) -> None:
    """The premise: what the gateway must not pass on (v3.8.3, on every answer, its OPTIONS included)."""
    for method in ("POST", "OPTIONS"):
        _, _, headers = await request(
            base_url(sandbox_server), method, "/msg/get_server_time", headers={"Origin": EVIL, "operationID": "op"}
        )
        cors = access_control(headers)
        assert cors["access-control-allow-origin"] == ["*"]
        assert cors["access-control-allow-headers"] == cors["access-control-allow-methods"] == ["*"]
        assert cors["access-control-allow-credentials"] == ["false"]


async def test_an_allowed_origin_gets_its_own_origin_once_and_none_of_openims_headers(
    alice: GatewayClient, recorder: Recorder
) -> None:
    status, body, headers = await signed(alice, "/im/msg/get_server_time", {}, APP)
    assert (status, body["errCode"]) == (200, 0)
    assert recorder.to("/msg/get_server_time"), "OpenIM answered, with its wildcards"
    assert access_control(headers) == {
        "access-control-allow-origin": [APP],
        "access-control-expose-headers": ["X-Request-ID, Retry-After"],
    }
    assert "Origin" in headers["Vary"]


async def test_a_refused_origin_gets_no_access_control_headers(alice: GatewayClient) -> None:
    status, body, headers = await signed(alice, "/im/msg/get_server_time", {}, EVIL)
    assert (status, body["errCode"]) == (200, 0), "answered: the browser, seeing no allowance, keeps it from the page"
    assert access_control(headers) == {}


async def test_without_an_origin_there_are_no_access_control_headers(alice: GatewayClient) -> None:
    _, _, headers = await signed(alice, "/im/msg/get_server_time", {}, None)
    assert access_control(headers) == {}
    assert "Vary" not in headers


async def test_an_origin_is_compared_as_browsers_write_it(alice: GatewayClient) -> None:
    # Configured as http://localhost:8081; a browser never writes a default port or capitals.
    _, _, headers = await signed(alice, "/im/msg/get_server_time", {}, "http://localhost:8081")
    assert access_control(headers)["access-control-allow-origin"] == ["http://localhost:8081"]
    for other in ("http://localhost:8082", "https://localhost:8081", "http://LOCALHOST:8081", "null"):
        _, _, headers = await signed(alice, "/im/msg/get_server_time", {}, other)
        assert access_control(headers) == {}, other


async def test_a_preflight_is_answered_by_the_gateway_with_exactly_the_headers_clients_send(
    gateway: Gateway, recorder: Recorder
) -> None:
    preflight = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-digest,content-type,signature,signature-input",
    }
    status, body, headers = await request(gateway.url, "OPTIONS", "/im/msg/send_msg", headers=preflight)
    assert (status, body) == (204, None)
    cors = access_control(headers)
    assert cors == {
        "access-control-allow-origin": [APP],
        "access-control-allow-methods": ["POST"],
        "access-control-allow-headers": [ALLOWED_HEADERS],
        "access-control-max-age": ["7200"],
    }
    assert [name.strip() for name in ALLOWED_HEADERS.split(",")] == ALLOWED
    assert headers["Vary"] == "Origin"
    assert headers["X-Request-ID"]
    assert recorder.to("/msg/send_msg") == [], "OpenIM never sees a preflight"
    status, _, headers = await request(gateway.url, "OPTIONS", "/auth/handshake", headers=preflight)
    assert status == 204
    assert access_control(headers)["access-control-allow-methods"] == ["GET, POST"]
    status, _, headers = await request(gateway.url, "OPTIONS", "/ws", headers=preflight)
    assert (status, access_control(headers)["access-control-allow-methods"]) == (204, ["GET"])


async def test_a_preflight_from_a_refused_origin_is_403_with_the_envelope(gateway: Gateway) -> None:
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    status, body, headers = await request(gateway.url, "OPTIONS", "/im/msg/send_msg", headers=preflight)
    assert (status, body["errCode"]) == (403, 40300)
    assert access_control(headers) == {}


async def test_routes_outside_auth_im_and_ws_get_no_cors(gateway: Gateway) -> None:
    preflight = {"Origin": APP, "Access-Control-Request-Method": "GET"}
    for path in ("/admin/bans", "/metrics", "/webhooks/openim/x/y", "/wsx", "/imx"):
        status, _, headers = await request(gateway.url, "OPTIONS", path, headers=preflight)
        assert status != 204, path
        assert access_control(headers) == {}, path
        status, _, headers = await request(gateway.url, "GET", path, headers={"Origin": APP})
        assert access_control(headers) == {}, path


async def test_the_gateways_own_refusals_reach_an_allowed_page(gateway: Gateway) -> None:
    """A page must be able to read the envelope of a 401 or a 429, or it cannot tell the user why."""
    status, body, headers = await request(
        gateway.url, "POST", "/im/msg/get_server_time", headers={"Origin": APP}, body=b"{}"
    )
    assert (status, body["errCode"]) == (401, 40100)
    assert access_control(headers)["access-control-allow-origin"] == [APP]


async def test_a_streamed_answer_carries_the_allowance_too(alice: GatewayClient, sandbox: Sandbox) -> None:
    ids = [f"user{index}" for index in range(400)]
    for user_id in ids:
        sandbox.add_user(user_id, nickname=f"A rather long nickname for user {user_id}" * 3)
    status, body, headers = await signed(alice, "/im/user/get_users_info", {"userIDs": ids}, APP)
    assert status == 200
    assert len(body["data"]["usersInfo"]) == 400
    assert headers.get("Content-Length") is None, "streamed, not read whole"
    assert access_control(headers)["access-control-allow-origin"] == [APP]


async def test_any_origin_is_answered_with_a_wildcard_and_no_vary(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(PHASE="4", CORS_ALLOWED_ORIGINS="*")
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    status, _, headers = await request(gateway.url, "OPTIONS", "/im/msg/send_msg", headers=preflight)
    assert status == 204
    assert access_control(headers)["access-control-allow-origin"] == ["*"]
    assert "Vary" not in headers


async def test_without_configured_origins_a_preflight_is_not_answered(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(PHASE="4")
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    status, body, headers = await request(gateway.url, "OPTIONS", "/im/msg/send_msg", headers=preflight)
    assert (status, body["errCode"]) == (405, 40500)
    assert access_control(headers) == {}


async def test_credentials_are_allowed_only_when_configured(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(PHASE="4", CORS_ALLOWED_ORIGINS=APP, CORS_ALLOW_CREDENTIALS="true")
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    _, _, headers = await request(gateway.url, "OPTIONS", "/im/msg/send_msg", headers=preflight)
    assert access_control(headers)["access-control-allow-credentials"] == ["true"]


# -- configuration ----------------------------------------------------------------------------


def cors_settings(**env: str) -> Settings:
    return Settings.from_env({f"MESSENGER_GW_{name}": value for name, value in env.items()}, dev=True)


def test_origins_are_normalised_as_browsers_write_them() -> None:
    configured = "HTTPS://App.Example.com:443/, http://localhost:80, http://[::1]:8080, https://bücher.example"
    assert cors_settings(CORS_ALLOWED_ORIGINS=configured).cors.origins == {
        "https://app.example.com",
        "http://localhost",
        "http://[::1]:8080",
        "https://xn--bcher-kva.example",
    }


@pytest.mark.parametrize(
    ("origins", "problem"),
    [
        ("https://app.example.com/path", "no path"),
        ("app.example.com", "is not an origin"),
        ("https://user@app.example.com", "no path, query, fragment or user"),
        ("null", "never allow it"),
        ("*, https://app.example.com", "give it alone"),
        ("https://app.example.com:99999", "invalid port"),
    ],
)
def test_a_malformed_origin_stops_start_up_naming_the_variable(origins: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS") as error:
        cors_settings(CORS_ALLOWED_ORIGINS=origins)
    assert problem in str(error.value)


def test_a_wildcard_is_refused_while_credentials_are_allowed() -> None:
    with pytest.raises(ConfigError, match=r"CORS_ALLOWED_ORIGINS: \* cannot be combined with CORS_ALLOW_CREDENTIALS"):
        cors_settings(CORS_ALLOWED_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true")
    assert cors_settings(CORS_ALLOWED_ORIGINS=APP, CORS_ALLOW_CREDENTIALS="true").cors.allow_credentials
