"""Shared fixtures: real ``redis-server`` processes on loopback, the OpenIM sandbox, clocks."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from jwt.warnings import InsecureKeyLengthWarning

from messenger_gw.app import create_app
from messenger_gw.metrics import Metrics
from messenger_gw.openim import Deadlines, OpenIMClient, new_pool
from messenger_gw.openim._transport.pool import UpstreamPool
from messenger_gw.sandbox import FakeClock, Sandbox, SandboxConfig, create_sandbox_app
from messenger_gw.sdk import GatewayClient
from messenger_gw.settings import Settings

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A ``redis-server`` on a free loopback port with its data in a temporary folder."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: run the suite through `make test`, which installs it")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="messenger-gw-redis-"))
        self._args = [binary, "--bind", LOOPBACK, "--port", str(self.port), "--dir", str(self.dir), *extra]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = self.dir / "redis.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(self._args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as c:
                    c.ping()
                return
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess("--save", "", "--appendonly", "no")
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisProcess]:
    """A one-node Redis Cluster owning all 16384 slots: real cluster protocol, one process."""
    # The bus port defaults to port + 10000, which overflows for high ephemeral ports.
    server = RedisProcess(
        "--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-port", str(free_port())
    )
    server.start()
    with server.client() as c:
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster did not reach cluster_state:ok")
            time.sleep(0.05)
    yield server
    server.remove()


class SentinelProcess(RedisProcess):
    """A ``redis-server --sentinel`` on a free loopback port watching ``master`` under the name :data:`MASTER_NAME`."""

    MASTER_NAME = "gw"

    def __init__(self, master: RedisProcess) -> None:
        super().__init__()
        config = self.dir / "sentinel.conf"  # Sentinel rewrites its configuration as it learns
        config.write_text(
            f"bind {LOOPBACK}\nport {self.port}\ndir {self.dir}\n"
            f"sentinel monitor {self.MASTER_NAME} {LOOPBACK} {master.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {self.MASTER_NAME} 10000\n"
        )
        self._args = [self._args[0], str(config), "--sentinel"]

    @property
    def url(self) -> str:
        return f"redis+sentinel://{LOOPBACK}:{self.port}/{self.MASTER_NAME}/0"

    def master_port(self) -> int:
        with self.client() as c:
            _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME)
        return int(port)


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[tuple[SentinelProcess, RedisProcess]]:
    """A sentinel and the master it watches (a server of its own: the shared one stays standalone)."""
    master = RedisProcess("--save", "", "--appendonly", "no")
    master.start()
    sentinel = SentinelProcess(master)
    sentinel.start()
    yield sentinel, master
    sentinel.remove()
    master.remove()


@pytest.fixture
def clean_redis(redis_server: RedisProcess) -> RedisProcess:
    with redis_server.client() as c:
        c.flushall()
    return redis_server


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(fake_clock: FakeClock) -> Sandbox:
    return Sandbox(SandboxConfig(clock=fake_clock))


@dataclasses.dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Recorder:
    """What reached the sandbox ("OpenIM"), and per-path answers that replace the sandbox's."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.overrides: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append(Recorded(request.path, dict(request.headers), await request.read()))
        override = self.overrides.get(request.path)
        return await (override or handler)(request)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def sandbox_server(sandbox: Sandbox, recorder: Recorder) -> AsyncIterator[TestServer]:
    server = TestServer(create_sandbox_app(sandbox, middlewares=[recorder.middleware]), host=LOOPBACK)
    await server.start_server()
    yield server
    await server.close()


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


OpenIMAt = Callable[..., OpenIMClient]


@pytest.fixture
async def openim_at() -> AsyncIterator[OpenIMAt]:
    """``openim_at(url, metrics=, deadlines=, pool=)``: a client of OpenIM at ``url``; its pool closes
    after the test."""
    pools: list[UpstreamPool] = []

    def client(
        url: str,
        *,
        metrics: Metrics | None = None,
        deadlines: Deadlines | None = None,
        pool: UpstreamPool | None = None,
    ) -> OpenIMClient:
        pools.append(pool or new_pool(url, max_connections=100, connect=1, pool=1))
        return OpenIMClient(
            pools[-1], url, metrics=metrics or Metrics(), deadlines=deadlines or Deadlines(read=5, total=10)
        )

    yield client
    for pool in pools:
        await pool.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def deadlines() -> Deadlines:
    return Deadlines(read=5, total=10)


@pytest.fixture
def openim_client(
    sandbox_server: TestServer, openim_at: OpenIMAt, metrics: Metrics, deadlines: Deadlines
) -> OpenIMClient:
    return openim_at(base_url(sandbox_server), metrics=metrics, deadlines=deadlines)


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Clear every MESSENGER_GW_* variable, then set the given ones."""

    def apply(**values: str) -> None:
        for key in list(os.environ):
            if key.startswith("MESSENGER_GW_"):
                monkeypatch.delenv(key)
        for key, value in values.items():
            monkeypatch.setenv("MESSENGER_GW_" + key, value)

    return apply


def gateway_settings(openim_url: str, *, redis_url: str | None = None, **extra: str) -> Settings:
    """Production-mode settings pointing at test servers."""
    env = {
        "MESSENGER_GW_OPENIM_API_URL": openim_url,
        "MESSENGER_GW_OPENIM_SECRET": "openIM123",
        "MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:10001",
        "MESSENGER_GW_PUBLIC_IM_URL": "https://chat.example.com/im",
        "MESSENGER_GW_REDIS_URL": redis_url or f"redis://{LOOPBACK}:{free_port()}",
        "MESSENGER_GW_USER_SERVICE_URL": f"http://{LOOPBACK}:{free_port()}",
        "MESSENGER_GW_USER_SERVICE_TOKEN": USER_SERVICE_TOKEN,
    } | {"MESSENGER_GW_" + key: value for key, value in extra.items()}
    return Settings.from_env(env, dev=False)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A metric's current value; 0 when the series has not been touched."""
    metrics.flush()
    return metrics.registry.get_sample_value(name, labels) or 0.0


USER_SERVICE_TOKEN = "user-service-token-value"
GOOD_CODE = "246810"


class FakeUserService:
    """The user-service side of docs/user-service.md: accepts GOOD_CODE for any userID."""

    def __init__(self) -> None:
        self.mode = "ok"  # or "down" (HTTP 500), "garbage" (not JSON), "refuse" (403)
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/identity/verify", self._verify)
        return app

    async def _verify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"authorization": request.headers.get("Authorization"), "body": body})
        if request.headers.get("Authorization") != f"Bearer {USER_SERVICE_TOKEN}" or self.mode == "refuse":
            return web.Response(status=403)
        if self.mode == "down":
            return web.Response(status=500)
        if self.mode == "garbage":
            return web.Response(text="<html>")
        credentials = body.get("credentials", {})
        if credentials.get("code") != GOOD_CODE or not credentials.get("userID"):
            return web.json_response({"error": "invalid code"}, status=401)
        user_id = credentials["userID"]
        return web.json_response({"userID": user_id, "nickname": user_id.title(), "faceURL": ""})


@pytest.fixture
def user_service() -> FakeUserService:
    return FakeUserService()


@pytest.fixture
async def user_service_url(user_service: FakeUserService) -> AsyncIterator[str]:
    server = TestServer(user_service.app(), host=LOOPBACK)
    await server.start_server()
    yield base_url(server)
    await server.close()


@dataclasses.dataclass
class Gateway:
    app: web.Application
    url: str

    def client(self) -> GatewayClient:
        return GatewayClient(self.url)


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(
    sandbox_server: TestServer, clean_redis: RedisProcess, user_service_url: str
) -> AsyncIterator[StartGateway]:
    """Start gateway apps (production mode) over the sandbox and one real redis-server."""
    servers: list[TestServer] = []

    async def start(**overrides: str) -> Gateway:
        settings = gateway_settings(
            base_url(sandbox_server), redis_url=clean_redis.url, **({"USER_SERVICE_URL": user_service_url} | overrides)
        )
        app = create_app(settings)
        server = TestServer(app, host=LOOPBACK)
        await server.start_server()
        servers.append(server)
        return Gateway(app, base_url(server))

    yield start
    for server in servers:
        await server.close()


ENVELOPE_KEYS = {"errCode", "errMsg", "errDlt"}


class Wire:
    """Raw HTTP to the sandbox, so tests see exactly what OpenIM would send."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def raw(
        self, path: str, body: Any = None, *, headers: dict[str, str] | None = None, method: str = "POST"
    ) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else orjson.dumps(body if body is not None else {})
        async with self.session.request(method, self.url + path, data=data, headers=headers or {}) as response:
            return response.status, dict(response.headers), await response.read()

    async def get_json(self, path: str, headers: dict[str, str]) -> dict[str, Any]:
        status, _, raw = await self.raw(path, headers=headers | {"Accept-Encoding": "identity"})
        assert status == 200
        reply: dict[str, Any] = orjson.loads(raw)
        return reply

    async def post(self, path: str, body: Any = None, *, token: str | None = None, op: str = "op-1") -> dict[str, Any]:
        headers = {"Accept-Encoding": "identity"}
        if op:
            headers["operationID"] = op
        if token is not None:
            headers["token"] = token
        status, _, raw = await self.raw(path, body, headers=headers)
        assert status == 200, raw
        reply: dict[str, Any] = orjson.loads(raw)
        return reply

    async def ok(self, path: str, body: Any = None, *, token: str | None = None) -> Any:
        reply = await self.post(path, body, token=token)
        assert reply["errCode"] == 0, reply
        return reply.get("data")

    async def admin_token(self) -> str:
        data = await self.ok("/auth/get_admin_token", {"secret": "openIM123", "userID": "imAdmin"})
        token: str = data["token"]
        return token

    async def register(self, admin: str, *user_ids: str) -> None:
        users = [{"userID": u, "nickname": u.upper()} for u in user_ids]
        await self.ok("/user/user_register", {"users": users}, token=admin)

    async def user_token(self, admin: str, user_id: str, platform_id: int) -> str:
        data = await self.ok("/auth/get_user_token", {"userID": user_id, "platformID": platform_id}, token=admin)
        token: str = data["token"]
        return token


@pytest.fixture
async def wire(sandbox_server: TestServer) -> AsyncIterator[Wire]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield Wire(session, base_url(sandbox_server))


def decode(token: str, secret: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # OpenIM's default secret is 9 bytes
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
    return claims


def assert_error(reply: dict[str, Any], code: int, msg: str | None = None) -> None:
    assert set(reply) == ENVELOPE_KEYS, "errors carry no data key"
    assert reply["errCode"] == code, reply
    if msg is not None:
        assert reply["errMsg"] == msg
