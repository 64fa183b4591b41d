"""Hypothesis profiles for the property tests: ``ci`` (the default, in ``make test``) and ``fuzz`` (``make fuzz``).

``ci`` is bounded and derandomized, so a run in CI explores the same examples every time and
writes nothing into the checkout; ``fuzz`` explores many more, randomly, and keeps what it
found under ``.hypothesis/`` (ignored by git) so a failure found once is tried first next time.
``HYPOTHESIS_PROFILE`` selects one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, Gateway, StartGateway

# Each property drives one gateway (or pool) started for its test, not one per example: starting a
# gateway costs more than an example, and what a test checks per example is what that example changed.
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture]

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,  # the examples cross sockets on a shared machine: their time says nothing
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=SHARED_FIXTURES,
)
settings.register_profile(
    "fuzz",
    max_examples=1_000,
    deadline=None,
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[2] / ".hypothesis" / "examples"),
    print_blob=True,
    suppress_health_check=[*SHARED_FIXTURES, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(PHASE="4")


@pytest.fixture
async def alice(gateway: Gateway) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "alice", "code": GOOD_CODE})
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session
