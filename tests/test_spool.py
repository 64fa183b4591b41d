"""The local spool: durable appends, replay into the store, nothing lost on a failed replay."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from messenger_gw.spool import Spool, SpoolFull


async def test_spooled_events_are_replayed_in_order_and_the_spool_empties(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append({"n": n})
    assert spool.pending() == 3
    delivered: list[dict[str, Any]] = []

    async def deliver(record: dict[str, Any]) -> None:
        delivered.append(record)

    assert await spool.replay(deliver) == 3
    assert delivered == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert spool.pending() == 0
    assert os.listdir(tmp_path) == []


async def test_a_failed_replay_keeps_what_was_not_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(4):
        spool.append({"n": n})
    delivered: list[int] = []

    async def flaky(record: dict[str, Any]) -> None:
        if record["n"] == 2:
            raise ConnectionError("store down again")
        delivered.append(record["n"])

    with pytest.raises(ConnectionError):
        await spool.replay(flaky)
    assert delivered == [0, 1]
    assert spool.pending() == 2
    spool.append({"n": 4})  # new events while a replay is pending go to a new live file

    async def ok(record: dict[str, Any]) -> None:
        delivered.append(record["n"])

    assert await spool.replay(ok) == 3
    assert delivered == [0, 1, 2, 3, 4]


async def test_an_append_during_a_replay_is_not_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"n": 0})
    seen: list[int] = []

    async def deliver_and_append(record: dict[str, Any]) -> None:
        seen.append(record["n"])
        if record["n"] == 0:
            spool.append({"n": 1})  # same process, while its earlier file is being replayed

    await spool.replay(deliver_and_append)
    await spool.replay(deliver_and_append)
    assert seen == [0, 1]


def test_a_full_spool_refuses_rather_than_pretends(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64)
    spool.append({"n": "x" * 20})
    with pytest.raises(SpoolFull):
        spool.append({"n": "y" * 60})
