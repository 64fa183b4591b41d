"""The assembled app: probes, metrics, operationID and the error envelope."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from messenger_gw.app import create_app
from messenger_gw.edge import DRAINING
from messenger_gw.sandbox import Sandbox
from messenger_gw.settings import Settings
from messenger_gw.store import STORE, MemoryStore
from tests.conftest import LOOPBACK, RedisProcess, base_url, free_port, gateway_settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def wait_ready(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            response = await client.get("/readyz")
            if response.status == 200:
                body: dict[str, Any] = await response.json()
                return body
            await asyncio.sleep(0.02)


@pytest.fixture
def settings(sandbox_server: TestServer, clean_redis: RedisProcess) -> Settings:
    return gateway_settings(base_url(sandbox_server), redis_url=clean_redis.url)


@pytest.fixture
async def client(aiohttp_client: MakeClient, settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


async def test_healthz_answers_without_dependencies(aiohttp_client: MakeClient) -> None:
    nothing = f"http://{LOOPBACK}:{free_port()}"
    client = await aiohttp_client(create_app(gateway_settings(nothing)))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_green_with_redis_and_openim(client: Client) -> None:
    assert await wait_ready(client) == {"status": "ready", "checks": {"store": "ok", "openim": "ok"}}


async def test_readyz_never_fetches_an_admin_token(client: Client, sandbox: Sandbox) -> None:
    await wait_ready(client)
    for _ in range(20):
        assert (await client.get("/readyz")).status == 200
    assert sandbox.calls["/auth/get_admin_token"] == 1
    assert sandbox.calls["/msg/get_server_time"] >= 20


async def test_readyz_reports_an_unreachable_store(aiohttp_client: MakeClient, sandbox_server: TestServer) -> None:
    client = await aiohttp_client(create_app(gateway_settings(base_url(sandbox_server))))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["store"].startswith("unreachable")


async def test_readyz_reports_unreachable_openim(aiohttp_client: MakeClient, clean_redis: RedisProcess) -> None:
    nothing = f"http://{LOOPBACK}:{free_port()}"
    client = await aiohttp_client(create_app(gateway_settings(nothing, redis_url=clean_redis.url)))
    response = await client.get("/readyz")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["store"] == "ok"
    assert checks["openim"].startswith("no admin token yet")


async def test_readyz_fails_while_draining(client: Client) -> None:
    await wait_ready(client)
    client.app[DRAINING].set()
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "draining"}


async def test_dev_mode_without_redis_uses_the_memory_store(
    aiohttp_client: MakeClient, sandbox_server: TestServer
) -> None:
    settings = Settings.from_env({"MESSENGER_GW_OPENIM_API_URL": base_url(sandbox_server)}, dev=True)
    client = await aiohttp_client(create_app(settings))
    assert isinstance(client.app[STORE], MemoryStore)
    assert (await wait_ready(client))["checks"]["store"] == "ok"


async def test_request_id_is_echoed_when_sane_and_minted_otherwise(client: Client) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "req-123.abc"})
    assert kept.headers["X-Request-ID"] == "req-123.abc"
    for bad in ("x" * 65, "has space", "new\u00e9line"):
        replaced = await client.get("/healthz", headers={"X-Request-ID": bad})
        minted = replaced.headers["X-Request-ID"]
        assert minted != bad
        assert len(minted) == 24
    plain = await client.get("/healthz")
    assert len(plain.headers["X-Request-ID"]) == 24


async def test_unknown_route_is_404_in_the_envelope(client: Client) -> None:
    response = await client.get("/no/such/thing")
    assert response.status == 404
    assert await response.json() == {"errCode": 40400, "errMsg": "Not Found", "errDlt": ""}
    assert response.headers["X-Request-ID"]


async def test_wrong_method_is_405_in_the_envelope_with_allow(client: Client) -> None:
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["errCode"] == 40500
    assert "GET" in response.headers["Allow"]


async def test_metrics_count_requests_by_route_template(client: Client) -> None:
    await client.get("/healthz")
    await client.get("/no/such/thing")
    text = await (await client.get("/metrics")).text()
    assert 'messenger_gw_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'messenger_gw_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "messenger_gw_http_request_duration_seconds_bucket" in text
    assert "/no/such/thing" not in text, "raw paths never become labels"


async def test_metrics_show_admin_token_refreshes(client: Client) -> None:
    await wait_ready(client)
    text = await (await client.get("/metrics")).text()
    assert 'messenger_gw_admin_token_refreshes_total{outcome="ok"} 1.0' in text


async def test_one_access_log_line_per_request_without_the_raw_path(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="messenger_gw.access"):
        await client.get("/no/such/secret-path", headers={"X-Request-ID": "req-1"})
    [record] = [r for r in caplog.records if r.name == "messenger_gw.access"]
    assert record.__dict__["route"] == "unmatched"
    assert record.__dict__["status"] == 404
    assert "secret-path" not in record.getMessage()


async def test_metrics_have_no_created_series(client: Client) -> None:
    await client.get("/healthz")
    assert "_created" not in await (await client.get("/metrics")).text()


def test_minted_operation_ids_are_unique_and_24_hex_characters() -> None:
    from messenger_gw.operation_id import new_operation_id

    minted = {new_operation_id() for _ in range(10_000)}
    assert len(minted) == 10_000
    assert all(len(m) == 24 and int(m, 16) >= 0 for m in minted)
