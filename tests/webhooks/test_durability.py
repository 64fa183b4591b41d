"""Nothing the gateway answered 200 for is lost, and nothing is applied twice, across failures.

A redis-server with append-only persistence (fsync always) is killed and restarted mid-stream,
events arriving meanwhile go to the spool, the gateway (and so its consumer) is restarted, and a
poison event sits in the stream.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp.test_utils import TestServer

from messenger_gw.app import create_app
from messenger_gw.keys import MODERATION_FLAGS as FLAGS
from messenger_gw.keys import WEBHOOK_DEAD_STREAM as DEAD_STREAM
from messenger_gw.keys import WEBHOOK_STREAM as STREAM
from messenger_gw.webhooks.consumer import GROUP, WEBHOOK_CONSUMER
from tests.conftest import LOOPBACK, RedisProcess, base_url, gateway_settings

DEPLOY = Path(__file__).parents[2] / "deploy"
SECRET = "durable-secret-0123456789"
COMMAND = "callbackAfterSendSingleMsgCommand"


def event(n: int) -> bytes:
    content = orjson.dumps({"content": f"refund request {n}"}).decode()
    body = {"callbackCommand": COMMAND, "sendID": "u1", "recvID": "u2", "serverMsgID": f"srv-{n}",
            "contentType": 101, "sessionType": 1, "content": content}  # fmt: skip
    return orjson.dumps(body) + b"\n"


@pytest.fixture
def persistent_redis() -> Any:
    server = RedisProcess("--appendonly", "yes", "--appendfsync", "always", "--save", "")
    server.start()
    yield server
    server.remove()


async def start(openim_url: str, redis: RedisProcess, spool: Path, flagged: Path) -> TestServer:
    settings = gateway_settings(
        openim_url,
        redis_url=redis.url,
        WEBHOOK_SECRETS=SECRET,
        WEBHOOK_SPOOL_DIR=str(spool),
        WEBHOOK_FLAGGED_WORDS_FILE=str(flagged),
    )
    app = create_app(settings)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    app[WEBHOOK_CONSUMER].retry_after = 0.05
    return server


async def send(http: aiohttp.ClientSession, server: TestServer, body: bytes) -> int:
    url = f"{base_url(server)}/webhooks/openim/{SECRET}/{COMMAND}"
    async with http.post(url, data=body, headers={"Content-Type": "application/json; charset=utf-8"}) as response:
        return response.status


@pytest.mark.slow
async def test_every_answered_event_is_processed_once_across_store_and_gateway_restarts(
    persistent_redis: RedisProcess, sandbox_server: TestServer, tmp_path: Path
) -> None:
    flagged = tmp_path / "flagged.txt"
    flagged.write_text("refund\n")
    openim = base_url(sandbox_server)
    gateway = await start(openim, persistent_redis, tmp_path / "spool", flagged)
    answered: list[int] = []
    async with aiohttp.ClientSession() as http:
        for n in range(30):
            assert await send(http, gateway, event(n)) == 200
            answered.append(n)
        persistent_redis.stop()  # SIGKILL, mid-stream
        for n in range(30, 40):
            assert await send(http, gateway, event(n)) == 200, "spooled, not refused"
            answered.append(n)
        assert len(list((tmp_path / "spool").glob("*.jsonl"))) == 1
        for n in (3, 31):
            assert await send(http, gateway, event(n)) == 200  # OpenIM sending an event twice
        await gateway.close()
        persistent_redis.start()  # the append-only file brings the stream back
        with persistent_redis.client() as c:
            assert c.xlen(STREAM) >= 30, "nothing acknowledged with 200 before the kill was lost"
            c.xadd(STREAM, {"command": COMMAND, "body": b"{broken", "key": b"poison"})
        gateway = await start(openim, persistent_redis, tmp_path / "spool", flagged)
        try:
            async with asyncio.timeout(20):
                while True:
                    with persistent_redis.client() as c:
                        flags = c.hlen(FLAGS)
                        pending = c.xpending(STREAM, GROUP)["pending"] if c.exists(STREAM) else 0
                        dead = c.xlen(DEAD_STREAM)
                    if flags == len(answered) and pending == 0 and dead == 1:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await gateway.close()
    with persistent_redis.client() as c:
        keys = {k.decode().rsplit("=", 1)[1] for k in c.hkeys(FLAGS)}
        counted = len(list(c.scan_iter(match="gw:webhook:counted:*", count=1000)))
        [(_, dead_fields)] = c.xrange(DEAD_STREAM)
    assert keys == {f"srv-{n}" for n in answered}, "every answered event applied"
    assert counted == len(answered), "each applied once, duplicates included"
    assert dead_fields[b"key"] == b"poison"
    assert dead_fields[b"error"].startswith(b"JSONDecodeError")
    assert not list((tmp_path / "spool").glob("*")), "the spool was replayed and emptied"


def test_the_shipped_redis_fsyncs_every_write_before_the_gateway_answers() -> None:
    """everysec could lose, in a host crash, the last second of events already answered 200."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "always"
