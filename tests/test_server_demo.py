"""``/demo/``, the web chat of a checkout (``server.add_demo``): served in dev mode only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from messenger_gw.app import create_app
from messenger_gw.server import DEMO_DIR, _banner, add_demo
from messenger_gw.settings import HostPort, Settings
from tests.conftest import base_url, gateway_settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


def built_demo(root: Path) -> Path:
    (root / "build").mkdir(parents=True)
    (root / "index.html").write_text("<title>web chat</title>")
    (root / "build" / "app.js").write_text("console.log('built')")
    return root


async def demo_client(aiohttp_client: MakeClient, settings: Settings, root: Path) -> Client:
    app = create_app(settings)
    add_demo(app, settings, root)
    return await aiohttp_client(app)


def dev_settings(sandbox_server: TestServer) -> Settings:
    return Settings.from_env({"MESSENGER_GW_OPENIM_API_URL": base_url(sandbox_server)}, dev=True)


async def test_dev_mode_serves_the_page_and_its_script(
    aiohttp_client: MakeClient, sandbox_server: TestServer, tmp_path: Path
) -> None:
    client = await demo_client(aiohttp_client, dev_settings(sandbox_server), built_demo(tmp_path))
    page = await client.get("/demo/")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert await page.text() == "<title>web chat</title>"
    script = await client.get("/demo/build/app.js")
    assert (script.status, script.content_type) == (200, "application/javascript")
    bare = await client.get("/demo", allow_redirects=False)
    assert (bare.status, bare.headers["Location"]) == (302, "/demo/")


async def test_nothing_outside_the_demo_folder_is_served(
    aiohttp_client: MakeClient, sandbox_server: TestServer, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("not for the web")
    client = await demo_client(aiohttp_client, dev_settings(sandbox_server), built_demo(tmp_path / "public"))
    for path in ("/demo/../secret.txt", "/demo/%2e%2e/secret.txt", "/demo/missing.js"):
        response = await client.get(path)
        assert response.status == 404, path


async def test_an_unbuilt_demo_says_how_to_build_it(
    aiohttp_client: MakeClient, sandbox_server: TestServer, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<title>web chat</title>")
    client = await demo_client(aiohttp_client, dev_settings(sandbox_server), tmp_path)
    response = await client.get("/demo/")
    assert response.status == 503
    assert "make run" in await response.text()


async def test_production_mode_has_no_demo(
    aiohttp_client: MakeClient, sandbox_server: TestServer, tmp_path: Path
) -> None:
    client = await demo_client(aiohttp_client, gateway_settings(base_url(sandbox_server)), built_demo(tmp_path))
    response = await client.get("/demo/")
    assert response.status == 404
    assert (await response.json())["errCode"] == 40400


def test_the_demo_folder_is_the_web_chats_public_folder() -> None:
    assert Path(__file__).resolve().parents[1] / "examples" / "web-chat" / "public" == DEMO_DIR
    assert (DEMO_DIR / "index.html").is_file()


def test_the_dev_banner_points_at_the_demo_first() -> None:
    settings = Settings.from_env({"MESSENGER_GW_OPENIM_API_URL": "http://127.0.0.1:10002"}, dev=True)
    banner = _banner(settings, HostPort("127.0.0.1", 8080))
    try_it = banner.split("Try it:\n", 1)[1]
    assert try_it.startswith("  open http://127.0.0.1:8080/demo/ in two browser windows")
