"""Concurrent set-if-absent claims share round trips and keep their own answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from messenger_gw.coalescer import SetIfAbsentCoalescer
from messenger_gw.memory_store import MemoryStore
from messenger_gw.store import StoreError


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.round_trips = 0
        self.fail = False

    async def set_if_absent_many(self, items: Sequence[tuple[str, bytes, float]]) -> list[bool]:
        self.round_trips += 1
        await asyncio.sleep(0.01)  # a round trip takes time, during which more claims arrive
        if self.fail:
            raise StoreError("down")
        return await super().set_if_absent_many(items)


async def test_concurrent_claims_are_coalesced_and_answered_each() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store)
    keys = [f"nonce{i % 50}" for i in range(100)]  # each key claimed twice
    results = await asyncio.gather(*(coalescer.set_if_absent(k, b"", ttl=10) for k in keys))
    assert results.count(True) == 50
    assert results.count(False) == 50
    assert store.round_trips <= 3


async def test_a_lone_claim_goes_at_once() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store)
    assert await coalescer.set_if_absent("k", b"", ttl=10) is True
    assert await coalescer.set_if_absent("k", b"", ttl=10) is False
    assert store.round_trips == 2


async def test_a_store_failure_reaches_every_waiting_claim() -> None:
    store = CountingStore()
    store.fail = True
    coalescer = SetIfAbsentCoalescer(store)
    results = await asyncio.gather(
        *(coalescer.set_if_absent(f"k{i}", b"", ttl=10) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreError) for r in results)
    store.fail = False
    assert await coalescer.set_if_absent("k0", b"", ttl=10) is True


async def test_a_cancelled_claim_does_not_break_the_batch() -> None:
    store = CountingStore()
    coalescer = SetIfAbsentCoalescer(store)
    first = asyncio.create_task(coalescer.set_if_absent("a", b"", ttl=10))
    second = asyncio.create_task(coalescer.set_if_absent("b", b"", ttl=10))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
