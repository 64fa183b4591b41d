"""The local spool: durable appends, replay into the store, nothing lost on a failed replay."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from messenger_gw.webhooks._spool import Spool, SpoolFull


async def test_spooled_events_are_replayed_in_order_and_the_spool_empties(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        await spool.append({"n": n})
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
        await spool.append({"n": n})
    delivered: list[int] = []

    async def flaky(record: dict[str, Any]) -> None:
        if record["n"] == 2:
            raise ConnectionError("store down again")
        delivered.append(record["n"])

    with pytest.raises(ConnectionError):
        await spool.replay(flaky)
    assert delivered == [0, 1]
    assert spool.pending() == 2
    await spool.append({"n": 4})  # new events while a replay is pending go to a new live file

    async def ok(record: dict[str, Any]) -> None:
        delivered.append(record["n"])

    assert await spool.replay(ok) == 3
    assert delivered == [0, 1, 2, 3, 4]
    assert os.listdir(tmp_path) == []


async def test_a_rewrite_that_fails_midway_keeps_every_undelivered_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The undelivered rest is never written over the file it replaces: a disk full (or a crash)
    while writing it leaves the old file whole."""
    spool = Spool(tmp_path)
    for n in range(4):
        await spool.append({"n": n})

    def disk_full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def store_fails_at_2(record: dict[str, Any]) -> None:
        if record["n"] == 2:
            monkeypatch.setattr(os, "write", disk_full)
            monkeypatch.setattr(os, "pwrite", disk_full)
            raise ConnectionError("store down again")

    with pytest.raises(OSError, match="No space left"):
        await spool.replay(store_fails_at_2)
    monkeypatch.undo()
    delivered: list[int] = []

    async def ok(record: dict[str, Any]) -> None:
        delivered.append(record["n"])

    await spool.replay(ok)
    assert {2, 3} <= set(delivered), "nothing undelivered was lost (0 and 1 again: the consumer applies them once)"
    assert os.listdir(tmp_path) == []


async def test_a_line_torn_by_a_crash_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.append({"n": 0})
    tear_the_last_line(tmp_path)
    delivered: list[int] = []

    async def deliver(record: dict[str, Any]) -> None:
        delivered.append(record["n"])

    assert await spool.replay(deliver) == 2
    assert delivered == [0]
    assert os.listdir(tmp_path) == []


def tear_the_last_line(folder: Path) -> None:
    [live] = folder.iterdir()
    with live.open("ab") as file:
        file.write(b'{"n": 1, "tor')  # a write cut short, never answered 200


async def test_an_append_during_a_replay_is_not_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.append({"n": 0})
    seen: list[int] = []

    async def deliver_and_append(record: dict[str, Any]) -> None:
        seen.append(record["n"])
        if record["n"] == 0:
            await spool.append({"n": 1})  # same process, while its earlier file is being replayed

    await spool.replay(deliver_and_append)
    await spool.replay(deliver_and_append)
    assert seen == [0, 1]


async def test_concurrent_appends_keep_their_arrival_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await asyncio.gather(*(spool.append({"n": n}) for n in range(20)))
    delivered: list[int] = []

    async def deliver(record: dict[str, Any]) -> None:
        delivered.append(record["n"])

    await spool.replay(deliver)
    assert delivered == list(range(20))


async def test_a_full_spool_refuses_rather_than_pretends(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64)
    await spool.append({"n": "x" * 20})
    with pytest.raises(SpoolFull):
        await spool.append({"n": "y" * 60})
