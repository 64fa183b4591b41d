"""Signature fields sent over several field lines are read whole (RFC 9651 section 4.2), through the real app.

An intermediary may add its own signature to a signed request (RFC 9421 section 4.3), and may put it
on a field line of its own: the gateway combines the lines and verifies the client's signature
wherever it sits. The same label on two lines stays a refusal.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from messenger_gw.auth import signatures
from messenger_gw.metrics import METRICS
from messenger_gw.sdk import GatewayClient
from tests.conftest import Gateway, StartGateway, sample

SIGNATURE_FIELDS = ("Signature-Input", "Signature")


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        yield client


def intermediary_signature(label: str = "proxy") -> dict[str, str]:
    """A signature a proxy on the way adds with a key of its own, unknown to the gateway."""
    message = signatures.Message(
        "GET", "/auth/session", "", {"content-digest": signatures.content_digest(b"")}, authority="gw.test"
    )
    return signatures.sign(
        message,
        key=os.urandom(32),
        keyid="proxy-key-1",
        created=int(time.time()),
        nonce=os.urandom(8).hex(),
        components=[*signatures.REQUIRED_COMPONENTS, "@authority"],
        label=label,
    )


def lines(*signed: dict[str, str]) -> list[tuple[str, str]]:
    """Each signature's ``Signature-Input`` and ``Signature`` on field lines of their own, in the order given."""
    return [(name, headers[name]) for name in SIGNATURE_FIELDS for headers in signed]


async def get_session(gateway: Gateway, fields: list[tuple[str, str]]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(gateway.url + "/auth/session", headers=CIMultiDict(fields)) as response,
    ):
        return response.status, orjson.loads(await response.read())


def failures(gateway: Gateway, reason: str) -> float:
    return sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason=reason)


@pytest.mark.parametrize("intermediary_first", [True, False], ids=["intermediary-first", "client-first"])
async def test_the_clients_signature_is_found_on_any_field_line(
    gateway: Gateway, client: GatewayClient, intermediary_first: bool
) -> None:
    own = client.signed_headers("GET", "/auth/session", b"")
    digest = [("Content-Digest", own.pop("Content-Digest"))]
    hop = intermediary_signature()
    status, body = await get_session(gateway, digest + lines(*((hop, own) if intermediary_first else (own, hop))))
    assert status == 200, body
    assert client.state is not None
    assert body["sessionId"] == client.state.session_id


async def test_the_same_label_on_two_field_lines_is_refused(gateway: Gateway, client: GatewayClient) -> None:
    own = client.signed_headers("GET", "/auth/session", b"")
    digest = [("Content-Digest", own.pop("Content-Digest"))]
    before = failures(gateway, "unparsable")
    # The client's genuine signature first, then another under its label: which one was meant is unknowable.
    status, body = await get_session(gateway, digest + lines(own, intermediary_signature(label="sig1")))
    assert status == 401, body
    assert body["errCode"] == 40100
    assert failures(gateway, "unparsable") == before + 1
