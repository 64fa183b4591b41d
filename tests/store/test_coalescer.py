"""Concurrent set-if-absent claims share round trips and keep their own answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from messenger_gw.store import MemoryStore, SetIfAbsentCoalescer, StoreError


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.round_trips = 0
        self.fail = False

    async def set_if_absent_many(self, keys: Sequence[str], value: bytes, *, ttl: float) -> list[bool]:
        self.round_trips += 1
        await asyncio.sleep(0.01)  # a round trip takes time, during which more claims arrive
        if self.fail:
            raise StoreError("down")
        return await super().set_if_absent_many(keys, value, ttl=ttl)


async def test_concurrent_claims_are_coalesced_and_answered_each() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store, value=b"", ttl=10)
    keys = [f"nonce{i % 50}" for i in range(100)]  # each key claimed twice
    results = await asyncio.gather(*(coalescer.claim(k) for k in keys))
    assert results.count(True) == 50
    assert results.count(False) == 50
    assert store.round_trips <= 3


async def test_a_lone_claim_goes_at_once() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store, value=b"", ttl=10)
    assert await coalescer.claim("k") is True
    assert await coalescer.claim("k") is False
    assert store.round_trips == 2


async def test_a_store_failure_reaches_every_waiting_claim() -> None:
    store = CountingStore()
    store.fail = True
    coalescer = SetIfAbsentCoalescer(store, value=b"", ttl=10)
    results = await asyncio.gather(*(coalescer.claim(f"k{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results)
    store.fail = False
    assert await coalescer.claim("k0") is True


async def test_a_cancelled_claim_does_not_break_the_batch() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store, value=b"", ttl=10)
    first = asyncio.create_task(coalescer.claim("a"))
    second = asyncio.create_task(coalescer.claim("b"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
