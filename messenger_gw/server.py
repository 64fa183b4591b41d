"""Running the gateway: production (``serve``), dev mode (``dev``) and the sandbox alone.

Shutdown on SIGTERM or SIGINT is graceful: readiness fails first, the
listening socket closes, in-flight requests get ``SHUTDOWN_TIMEOUT`` seconds
to finish, then pools and tasks close (aiohttp's runner does the last three
in that order).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import multiprocess

from . import __version__
from .app import create_app
from .edge import DRAINING, EdgeRunner
from .metrics import MULTIPROCESS_DIR
from .sandbox import Sandbox, SandboxConfig, create_sandbox_app, create_sandbox_ws_app
from .settings import DEV_ADMIN_KEY, OPENIM_DEFAULT_SECRET, HostPort, Settings

log = logging.getLogger(__name__)

GC_FIRST_GENERATION_THRESHOLD = 7_000
# The demo web chat of a checkout (examples/web-chat, built by `make run`); a wheel has no examples/.
DEMO_DIR = Path(__file__).resolve().parent.parent / "examples" / "web-chat" / "public"
MEMORY_FILE_SYSTEM = "/dev/shm"  # noqa: S108 - only ever the parent of a private mkdtemp folder


def run(settings: Settings, *, reuse_port: bool = False) -> None:
    _install_uvloop()
    asyncio.run(_run_gateway(settings, reuse_port=reuse_port))


def run_workers(workers: int) -> int:
    """Run ``workers`` gateway processes sharing the listening port (SO_REUSEPORT), and watch them.

    SIGTERM/SIGINT is passed on to every worker, which drains and exits. A worker
    that dies on its own takes the others down with it, so the orchestrator
    restarts one whole, healthy unit rather than a half-dead one.
    """
    command = [sys.executable, "-m", "messenger_gw", "serve", "--reuse-port"]
    # Workers write their metric values to memory-mapped files there: on a memory file system
    # when there is one, so those writes never reach a disk.
    memory = MEMORY_FILE_SYSTEM if os.path.isdir(MEMORY_FILE_SYSTEM) else None
    metrics_dir = os.environ.get(MULTIPROCESS_DIR) or tempfile.mkdtemp(prefix="messenger-gw-metrics-", dir=memory)
    env = os.environ | {MULTIPROCESS_DIR: metrics_dir}  # every worker's /metrics answers for all
    children = [subprocess.Popen(command, env=env) for _ in range(workers)]  # noqa: S603 - our own entry point
    print(f"messenger-gw: {workers} workers: {' '.join(str(c.pid) for c in children)}", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code is not None and not stopping:
                log.error("worker %d exited with %d; stopping the others", child.pid, code)
                status = code or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    for child in children:
        multiprocess.mark_process_dead(child.pid, metrics_dir)  # type: ignore[no-untyped-call]
    if MULTIPROCESS_DIR not in os.environ:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status if not stopping else max((c.returncode or 0) for c in children)


def run_sandbox(listen: HostPort, config: SandboxConfig, ws_listen: HostPort | None = None) -> None:
    _install_uvloop()
    asyncio.run(_run_sandbox_alone(listen, config, ws_listen))


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, listen: HostPort, *, shutdown_timeout: float, reuse_port: bool = False
) -> AsyncIterator[HostPort]:
    """Serve ``app`` on ``listen``; yields the bound address (the real port when 0 was asked).

    Malformed HTTP is answered with the envelope as well (``EdgeRunner``).
    """
    runner = EdgeRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port or None).start()
        host, port = runner.addresses[0][:2]
        yield HostPort(host, port)
    finally:
        await runner.cleanup()


async def _run_gateway(settings: Settings, *, reuse_port: bool = False) -> None:
    async with contextlib.AsyncExitStack() as stack:
        sandbox = None
        if settings.dev and settings.openim_api_url is None:
            sandbox_config = SandboxConfig(
                secret=settings.openim_secret.reveal(), admin_user_ids=(settings.openim_admin_user_id,)
            )
            sandbox = Sandbox(sandbox_config)
            sandbox_at = await stack.enter_async_context(
                serving(create_sandbox_app(sandbox), settings.dev_sandbox_listen, shutdown_timeout=1)
            )
            ws_at = await stack.enter_async_context(
                serving(create_sandbox_ws_app(sandbox), settings.dev_sandbox_ws_listen, shutdown_timeout=1)
            )
            settings = dataclasses.replace(settings, openim_api_url=sandbox_at.url)
            guard = settings.ws_guard
            if guard.upstream_url == f"ws://{settings.dev_sandbox_ws_listen}":  # not set by hand: where it listens
                guard = dataclasses.replace(guard, upstream_url=f"ws://{ws_at}")
                settings = dataclasses.replace(settings, ws_guard=guard)
        app = create_app(settings)
        add_demo(app, settings)
        gateway_at = await stack.enter_async_context(
            serving(app, settings.listen, shutdown_timeout=settings.shutdown_timeout, reuse_port=reuse_port)
        )
        if sandbox is not None and settings.webhooks.secrets:
            # As OpenIM's webhooks.yml `url` would: the receiver, with its secret as a path segment.
            sandbox.webhook_url = f"{gateway_at.url}/webhooks/openim/{settings.webhooks.secrets[0].reveal()}"
        _tune_garbage_collector()
        log.info("listening", extra={"address": str(gateway_at), "dev": settings.dev})
        print(
            _banner(settings, gateway_at) if settings.dev else f"messenger-gw {__version__} on {gateway_at.url}",
            flush=True,
        )
        await _wait_for_stop_signal()
        log.info("draining", extra={"timeout": settings.shutdown_timeout})
        app[DRAINING].set()


def add_demo(app: web.Application, settings: Settings, root: Path = DEMO_DIR) -> None:
    """``/demo/``: the web chat's page and its script, in dev mode only, where the checkout has them."""
    if not settings.dev or not root.is_dir():
        return

    async def page(request: web.Request) -> web.StreamResponse:
        if not (root / "build" / "app.js").is_file():
            return web.Response(status=503, text="The demo is not built: `make run` builds it (examples/web-chat).\n")
        return web.FileResponse(root / "index.html")

    async def to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/demo/")

    app.router.add_get("/demo", to_page)
    app.router.add_get("/demo/", page)
    app.router.add_static("/demo/", root)


async def _run_sandbox_alone(listen: HostPort, config: SandboxConfig, ws_listen: HostPort | None) -> None:
    sandbox = Sandbox(config)
    async with contextlib.AsyncExitStack() as stack:
        bound = await stack.enter_async_context(serving(create_sandbox_app(sandbox), listen, shutdown_timeout=1))
        print(f"OpenIM sandbox (v3.8.3 REST contract) on {bound.url}", flush=True)
        if ws_listen is not None:
            ws_at = await stack.enter_async_context(
                serving(create_sandbox_ws_app(sandbox), ws_listen, shutdown_timeout=1)
            )
            print(f"OpenIM sandbox msg-gateway (WebSocket) on ws://{ws_at}", flush=True)
        await _wait_for_stop_signal()


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _banner(settings: Settings, gateway: HostPort) -> str:
    api = settings.openim_api_url
    secret = (
        OPENIM_DEFAULT_SECRET
        if settings.openim_secret.reveal() == OPENIM_DEFAULT_SECRET
        else "<your MESSENGER_GW_OPENIM_SECRET>"
    )
    store = "Redis" if settings.redis_url else "in-memory store"
    dev_key = any(k.name == "dev" for k in settings.admin.api_keys)
    admin_try = (
        f"  curl -s {gateway.url}/admin/users/alice -H 'Authorization: Bearer {DEV_ADMIN_KEY}'   # the admin API\n"
        if dev_key
        else ""
    )
    demo_try = (
        f"  open {gateway.url}/demo/ in two browser windows   # the demo web chat: alice and bob, code 000000\n"
        if (DEMO_DIR / "index.html").is_file()
        else ""
    )
    return f"""\
messenger-gw {__version__}: dev mode ({store}, OpenIM at {api})
  gateway         {gateway.url}
  OpenIM sandbox  {api}
  WebSocket       {settings.openim_ws_url} (the guard: logins hand it out as wsURL)
  msg-gateway     {settings.ws_guard.upstream_url or "(unset: no guard)"}

Try it:
{demo_try}  curl -s {gateway.url}/healthz
  curl -s {gateway.url}/readyz
  curl -s {gateway.url}/metrics | grep messenger_gw_admin_token
  curl -s -X POST {api}/auth/get_admin_token -H 'operationID: try-1' \\
       -d '{{"secret":"{secret}","userID":"{settings.openim_admin_user_id}"}}'
{admin_try}{_media_steps(settings)}
Ctrl-C stops it."""


def _media_steps(settings: Settings) -> str:
    """The try-it lines of the sticker catalog and GIF search (docs/media.md), or why GIF search is off."""
    client = ".venv/bin/messenger-gw client"
    packs = settings.stickers.packs
    lines = [
        "Stickers and GIFs, with a client logged in as the README's steps do (docs/media.md):",
        f"  {client} call /stickers/packs --method GET   # {packs or 'the shipped example pack'}",
    ]
    if packs is None:
        lines.append(f"  {client} call /stickers/packs/twemoji-hello --method GET")
    gifs = settings.gifs
    if gifs.enabled:
        search = f"{client} call '/gifs/search?q=hello&limit=8' --method GET"
        lines.append(f"  {search}   # {gifs.provider}, rating {gifs.rating}")
    else:
        lines.append(
            "  GIF search is off: set MESSENGER_GW_GIF_API_KEY (GIPHY's; KLIPY's with MESSENGER_GW_GIF_PROVIDER=klipy)"
        )
    return "\n" + "\n".join(lines) + "\n"


def _tune_garbage_collector() -> None:
    """Fewer, cheaper collections on the request path (measured in docs/performance.md).

    Each request allocates many short-lived objects; the default first-generation
    threshold (700) runs a collection every few requests. Freezing what start-up built
    keeps those long-lived objects out of every later scan. A much larger threshold
    (50,000) was faster still but its longer pauses showed in the p99.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, 20, 100)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()
