"""The webhook route, by property: for every callbackCommand, whatever arrives is answered without an error of
the gateway's own; an after-event answered 200 is in the stream as it came and can be processed; one that
OpenIM could have sent is never refused; nothing refused is kept as an event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from messenger_gw.keys import WEBHOOK_STREAM
from messenger_gw.store import StreamEntry
from messenger_gw.webhooks import WEBHOOK_CONSUMER
from tests.conftest import Gateway, RedisProcess, StartGateway
from tests.properties.webhook_bodies import BEFORE, TEMPLATES, Delivery, deliveries

SECRET = "property-hook-secret-0123"
MAX_BODY = 4096
# An eighth of the profile's examples: every command is a test of its own.
PER_COMMAND = settings(max_examples=max(5, settings().max_examples // 8))


@pytest.fixture
async def hooks(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(
        WEBHOOK_SECRETS=SECRET,
        WEBHOOK_MAX_BODY_BYTES=str(MAX_BODY),
        WEBHOOK_SPOOL_DIR=str(tmp_path / "spool"),
        WEBHOOK_FAIL_POLICY="closed",
        PHASE="4",
    )


async def deliver(http: aiohttp.ClientSession, gateway: Gateway, delivery: Delivery) -> tuple[int, Any]:
    """POST as OpenIM's Go client does (contract 8.6): its headers, the command appended to the URL."""
    secret = SECRET if delivery.right_secret else SECRET[::-1]
    headers = {
        "User-Agent": "Go-http-client/1.1",
        "Content-Type": "application/json; charset=utf-8",
        "Operationid": delivery.operation_id,
    }
    url = f"{gateway.url}/webhooks/openim/{secret}/{delivery.command}"
    async with http.post(url, data=delivery.raw, headers=headers) as response:
        raw = await response.read()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, raw


def stream(redis: RedisProcess) -> list[tuple[bytes, dict[bytes, bytes]]]:
    with redis.client() as c:
        return list(c.xrange(WEBHOOK_STREAM))


@pytest.mark.parametrize("command", sorted(TEMPLATES))
@PER_COMMAND
@given(data=st.data())
async def test_every_callback_is_answered_and_every_answered_after_event_is_kept(
    hooks: Gateway, http: aiohttp.ClientSession, clean_redis: RedisProcess, command: str, data: st.DataObject
) -> None:
    delivery = data.draw(deliveries(command, MAX_BODY), label="delivery")
    before = stream(clean_redis)
    status, reply = await deliver(http, hooks, delivery)
    event(f"{'well formed' if delivery.well_formed else 'faulty'}: {status}")
    assert status < 500, reply
    after = stream(clean_redis)
    if command in BEFORE:
        assert after == before, "a before-callback is answered, never kept"
        if delivery.well_formed and delivery.right_secret:
            # No ban, word or rate rule is configured: nothing to block.
            assert status == 200, reply
            assert isinstance(reply, dict)
            assert (reply["actionCode"], reply["errCode"], reply["nextCode"]) == (0, 0, 0), reply
        return
    if delivery.well_formed and delivery.right_secret:
        assert status == 200, ("OpenIM could have sent this: refusing it loses the event", reply)
    if status != 200:
        assert status in (400, 404, 413), reply
        assert after == before, "refused, yet kept"
        return
    assert len(after) == len(before) + 1, "answered 200 without being kept"
    entry_id, fields = after[-1]
    assert fields[b"command"] == command.encode()
    assert fields[b"body"] == delivery.raw.decode("utf-8", errors="replace").encode()
    assert fields[b"operationID"] == delivery.operation_id.encode()
    # Kept, and processable: a stored event the consumer cannot apply would be retried, then dead-lettered.
    entry = StreamEntry(entry_id.decode(), {k.decode(): v for k, v in fields.items()})
    await hooks.app[WEBHOOK_CONSUMER].apply(entry)
