"""What OpenIM makes of the gateway's webhook answers, by property (contract 8.6): OpenIM reads only the body and
blocks only on ``actionCode 0, nextCode 1``, never looking at the status; and an after-event has no ID of its
own for some commands, so two deliveries are two events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, RedisProcess, StartGateway
from tests.properties.test_webhook_properties import MAX_BODY, SECRET, deliver, stream
from tests.properties.webhook_bodies import BEFORE, Delivery, deliveries

# An eighth of the profile's examples: every command is a test of its own.
PER_COMMAND = settings(max_examples=max(5, settings().max_examples // 8))
# OpenIM copies these from an allow answer whatever it says (8.6): the answer must repeat them.
ECHOED = {
    "callbackBeforeSetGroupInfoCommand": ("groupID", "groupName", "faceURL", "introduction"),
    "callbackBeforeSetGroupInfoExCommand": ("groupID",),
}
# After-events whose bodies carry no message or event ID (8.6).
WITHOUT_AN_ID = (
    "callbackAfterKickGroupCommand",
    "callbackAfterQuitGroupCommand",
    "callbackAfterUserRegisterCommand",
    "callbackAfterSingleMsgReadCommand",
    "callbackAfterGroupMsgReadCommand",
)


def is_block(reply: Any) -> bool:
    """OpenIM's own test (pkg/callbackstruct/common.go): anything else lets the action through."""
    return isinstance(reply, dict) and reply.get("actionCode") == 0 and reply.get("nextCode") == 1


@pytest.fixture(params=["closed", "open"])
async def policy_hooks(
    request: pytest.FixtureRequest, start_gateway: StartGateway, tmp_path: Path
) -> tuple[str, Gateway]:
    policy: str = request.param
    gateway = await start_gateway(
        WEBHOOK_SECRETS=SECRET,
        WEBHOOK_MAX_BODY_BYTES=str(MAX_BODY),
        WEBHOOK_SPOOL_DIR=str(tmp_path / "spool"),
        WEBHOOK_FAIL_POLICY=policy,
        PHASE="4",
    )
    return policy, gateway


@pytest.fixture
async def hooks(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(WEBHOOK_SECRETS=SECRET, WEBHOOK_SPOOL_DIR=str(tmp_path / "spool"), PHASE="4")


@pytest.mark.parametrize("command", sorted(BEFORE))
@PER_COMMAND
@given(data=st.data())
async def test_a_before_callback_is_answered_as_the_fail_policy_says_whatever_went_wrong(
    policy_hooks: tuple[str, Gateway], http: aiohttp.ClientSession, command: str, data: st.DataObject
) -> None:
    policy, gateway = policy_hooks
    delivery: Delivery = data.draw(deliveries(command, MAX_BODY), label="delivery")
    status, reply = await deliver(http, gateway, delivery)
    blocked = is_block(reply)
    event(f"{delivery.fault}: {'block' if blocked else 'allow'}")
    assert status < 500, reply
    if blocked:
        assert reply["errCode"] != 0, "a block with errCode 0 is a 500 to OpenIM's caller"
        assert policy == "closed", "no rule is configured: only the closed fail policy blocks"
    else:
        # OpenIM goes on: that must be the gateway's decision (the allow answer), or the open policy's.
        assert policy == "open" or (status, reply.get("errCode"), reply.get("nextCode")) == (200, 0, 0), reply
    if delivery.unevaluable:
        assert blocked == (policy == "closed"), (delivery.fault, reply)
    elif delivery.well_formed and delivery.right_secret:
        assert not blocked, reply
        body = orjson.loads(delivery.raw)
        for name in ECHOED.get(command, ()):
            assert reply.get(name) == body.get(name), (name, reply)


@pytest.mark.parametrize("command", WITHOUT_AN_ID)
@PER_COMMAND
@given(
    data=st.data(),
    operation_ids=st.lists(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16),
        min_size=2,
        max_size=3,
        unique=True,
    ),
)
async def test_identical_after_events_with_different_operation_ids_are_different_events(
    hooks: Gateway,
    http: aiohttp.ClientSession,
    clean_redis: RedisProcess,
    command: str,
    data: st.DataObject,
    operation_ids: list[str],
) -> None:
    """OpenIM never retries an after-callback: the same bytes twice, under two Operationids, are two kicks."""
    delivery = data.draw(deliveries(command, MAX_BODY).filter(lambda d: d.well_formed and d.right_secret))
    before = len(stream(clean_redis))
    for operation_id in operation_ids:
        status, reply = await deliver(http, hooks, Delivery(command, delivery.raw, operation_id, True, True, "none"))
        assert status == 200, reply
    kept = stream(clean_redis)[before:]
    assert len(kept) == len(operation_ids)
    keys = {fields[b"key"] for _, fields in kept}
    assert len(keys) == len(operation_ids), keys
