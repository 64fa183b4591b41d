"""The deployment files: nginx in front of a real gateway, and the manifests' essentials."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from messenger_gw.auth import public_key_text
from messenger_gw.sandbox import FakeClock
from tests.conftest import GOOD_CODE, LOOPBACK, Gateway, StartGateway, base_url, free_port

DEPLOY = Path(__file__).parent.parent / "deploy"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx is not installed: run the suite through `make test`, which installs it")
    return found


@pytest.fixture
async def openim_ws() -> AsyncIterator[TestServer]:
    """OpenIM's msg-gateway stand-in: a WebSocket that echoes, and says which query it saw."""

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"query:{request.query_string}")
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", socket)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    yield server
    await server.close()


def run_nginx(tmp_path: Path, variables: dict[str, str]) -> Iterator[str]:
    config = (DEPLOY / "nginx" / "messenger-gw.conf").read_text()
    for name, value in variables.items():
        config = config.replace("${" + name + "}", value)
    assert "${" not in config, "every placeholder is documented and replaced"
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "messenger-gw.conf").write_text(config)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off; worker_processes 1; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"fastcgi_temp_path {tmp_path}/fcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;\n"
        f"include {tmp_path}/conf.d/*.conf; }}\n"
    )
    binary = nginx_binary()
    check = subprocess.run(
        [binary, "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, "-c", str(main), "-p", str(tmp_path)], stderr=subprocess.DEVNULL)
    url = f"http://{variables['LISTEN']}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(url + "/nothing", timeout=1)  # noqa: S310 - loopback
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Any]:
    running: list[Iterator[str]] = []

    def start(gateway: Gateway, ws: TestServer, openim_network: str) -> str:
        folder = tmp_path / f"nginx{len(running)}"
        folder.mkdir()
        generator = run_nginx(
            folder,
            {
                "GATEWAY_UPSTREAM": gateway.url.removeprefix("http://"),
                "OPENIM_WS_UPSTREAM": base_url(ws).removeprefix("http://"),
                "LISTEN": f"{LOOPBACK}:{free_port()}",
                "OPENIM_NETWORK": openim_network,
            },
        )
        running.append(generator)
        return next(generator)

    yield start
    for generator in running:
        for _ in generator:
            pass


async def fetch(url: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body or None) as response:
        return response.status, await response.read()


async def test_nginx_routes_the_public_paths_and_hides_the_rest(
    start_gateway: StartGateway, openim_ws: TestServer, nginx_factory: Any
) -> None:
    gateway = await start_gateway(TRUSTED_PROXIES="127.0.0.1/32", WEBHOOK_SECRETS="hook-secret-0123456789")
    edge = nginx_factory(gateway, openim_ws, "10.0.0.0/8")
    key = public_key_text(X25519PrivateKey.generate())
    status, body = await fetch(
        edge + "/auth/handshake", "POST", f'{{"clientPublicKey":"{key}","platformID":5}}'.encode()
    )
    assert status == 200
    assert b"sessionId" in body
    assert (await fetch(edge + "/im/msg/get_server_time", "POST", b"{}"))[0] == 401, "reaches the gateway"
    assert (await fetch(edge + "/admin/bans"))[0] == 401
    for hidden in ("/healthz", "/readyz", "/metrics", "/internal/provision"):
        assert (await fetch(edge + hidden))[0] == 404, hidden
    assert (await fetch(edge + "/webhooks/openim/hook-secret-0123456789/x", "POST", b"{}"))[0] == 403


async def test_webhooks_pass_from_openims_network(
    start_gateway: StartGateway, openim_ws: TestServer, nginx_factory: Any
) -> None:
    gateway = await start_gateway(TRUSTED_PROXIES="127.0.0.1/32", WEBHOOK_SECRETS="hook-secret-0123456789")
    edge = nginx_factory(gateway, openim_ws, "127.0.0.1/32")
    command = "callbackBeforeSendSingleMsgCommand"
    body = f'{{"callbackCommand":"{command}","sendID":"u1","content":"{{}}"}}'.encode()
    status, reply = await fetch(f"{edge}/webhooks/openim/hook-secret-0123456789/{command}", "POST", body)
    assert (status, reply) == (200, b'{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}')


async def test_the_websocket_goes_to_the_guard_which_relays_it_to_openim_with_the_same_query(
    start_gateway: StartGateway, openim_ws: TestServer, nginx_factory: Any, fake_clock: FakeClock
) -> None:
    fake_clock.advance(time.time() - fake_clock())  # the sandbox's token expiry, by the gateway's clock
    gateway = await start_gateway(OPENIM_WS_URL_INTERNAL="ws" + base_url(openim_ws).removeprefix("http"))
    edge = nginx_factory(gateway, openim_ws, "10.0.0.0/8")
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        token = (await client.login({"userID": "u1", "code": GOOD_CODE}))["imToken"]
    query = f"sendID=u1&token={token}&platformID=5&operationID=op&isBackground=false&isMsgResp=true&sdkType=js"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{edge.replace('http', 'ws')}/ws?{query}") as ws:
            assert (await ws.receive_str()) == f"query:{query}", "what the stand-in for OpenIM saw"
            await ws.send_str('{"type":"ping"}')
            assert (await ws.receive_str()) == '{"type":"ping"}'
        async with http.ws_connect(f"{edge.replace('http', 'ws')}/ws?{query.replace(token, 'forged')}") as ws:
            refused = await ws.receive_str()
            assert refused == '{"errCode":1503,"errMsg":"TokenMalformedError","errDlt":""}', "the guard's answer"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_kubernetes_manifests_probe_drain_and_scale() -> None:
    docs = {doc["kind"]: doc for doc in load_all(DEPLOY / "kubernetes" / "messenger-gw.yaml")}
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    [container] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    grace = docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 5 + int(docs["ConfigMap"]["data"]["MESSENGER_GW_SHUTDOWN_TIMEOUT"])
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "messenger-gw"
    for name in docs["ConfigMap"]["data"]:
        assert name.startswith("MESSENGER_GW_")


def test_the_alert_rules_use_metrics_the_gateway_exports() -> None:
    from messenger_gw.metrics import Metrics

    exported = {family.name for family in Metrics().registry.collect()}
    [group] = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
    for rule in group["rules"]:
        for used in re.findall(r"messenger_gw_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|count|bucket|sum)$", "", used)
            assert base in exported, (rule["alert"], used)


def test_late_and_given_up_audit_entries_are_alerted_on() -> None:
    [group] = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
    expressions = " ".join(rule["expr"] for rule in group["rules"])
    assert "messenger_gw_audit_entries_waiting" in expressions
    assert 'messenger_gw_audit_writes_total{outcome="dropped"}' in expressions


def test_rate_limits_the_store_could_not_evaluate_are_alerted_on() -> None:
    [group] = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
    expressions = " ".join(rule["expr"] for rule in group["rules"])
    assert "messenger_gw_rate_limit_unevaluated_total" in expressions


def test_the_compose_file_wires_redis_the_gateway_and_nginx() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"redis", "messenger-gw", "nginx"}
    gateway_env = compose["services"]["messenger-gw"]["environment"]
    assert gateway_env["MESSENGER_GW_REDIS_URL"] == "redis://redis:6379/0"
    nginx_env = compose["services"]["nginx"]["environment"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (DEPLOY / "nginx" / "messenger-gw.conf").read_text()))
    assert placeholders <= set(nginx_env)


def test_the_dashboard_queries_only_metrics_the_gateway_exports() -> None:
    import json

    from messenger_gw.metrics import Metrics

    exported = {family.name for family in Metrics().registry.collect()}
    dashboard = json.loads((DEPLOY / "grafana" / "messenger-gw.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = re.findall(r"messenger_gw_[a-z_]+", target["expr"])
            assert used, panel["title"]
            for name in used:
                assert re.sub(r"_(total|count|bucket|sum)$", "", name) in exported, (panel["title"], name)
