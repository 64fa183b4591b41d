"""A local append-only spool for after-events that arrive while the store is unreachable.

OpenIM never retries an after-callback, so an event the gateway answered 200
must not depend on the store being up at that moment. Each process appends to
its own file (``webhooks-<pid>.jsonl`` in ``WEBHOOK_SPOOL_DIR``), one JSON
line an event, written and fsync'd before the answer. The disk work runs in a
thread, one append at a time in arrival order, so a slow disk holds up only
the events being spooled, not the event loop. A replayer moves the lines of
every spool file into the stream once the store answers again; a file is
replayed under an exclusive lock, so two processes never replay one file, and
what a replay leaves undelivered replaces the file by a rename, never by
rewriting it in place. A spool full beyond ``max_bytes`` refuses new events
(the receiver then answers 503 rather than pretend it kept one).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class SpoolFull(Exception):
    pass


class Spool:
    LIVE = "webhooks-*.jsonl"
    REPLAYING = "webhooks-*.jsonl.replaying-*"

    def __init__(self, folder: Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._folder = folder
        self._max_bytes = max_bytes
        self._path = folder / f"webhooks-{os.getpid()}.jsonl"
        self._handoffs = 0
        self._appending = asyncio.Lock()  # first come, first written: the file keeps the arrival order

    async def append(self, record: dict[str, Any]) -> None:
        """Keep ``record`` durably (written and fsync'd) before returning."""
        line = orjson.dumps(record) + b"\n"
        async with self._appending:
            await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.fstat(fd)
                # The replayer may have moved the file aside between our open and our lock.
                if written.st_ino != _inode(self._path):
                    continue
                if written.st_size + len(line) > self._max_bytes:
                    raise SpoolFull(f"spool {self._path} is full")
                os.write(fd, line)
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    def pending(self) -> int:
        """How many events wait in spool files."""
        total = 0
        for pattern in (self.LIVE, self.REPLAYING):
            for path in self._folder.glob(pattern):
                try:
                    total += path.read_bytes().count(b"\n")
                except OSError:
                    continue
        return total

    async def replay(self, deliver: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
        """Hand every spooled event to ``deliver`` (which stores it), oldest first; the number moved.

        Live files are first moved aside (writers then start new ones), so no lock is held
        while delivering. A delivery that fails stops the replay; the rest stays spooled.
        """
        moved = 0
        for path in await asyncio.to_thread(self._hand_over):
            moved += await self._replay_file(path, deliver)
        return moved

    def _hand_over(self) -> list[Path]:
        """Move the live files aside; every file waiting to be replayed, oldest first."""
        if not self._folder.is_dir():
            return []
        for path in sorted(self._folder.glob(self.LIVE)):
            self._move_aside(path)
        return sorted(self._folder.glob(self.REPLAYING))

    def _move_aside(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held by a writer for one write and fsync at most
            self._handoffs += 1
            os.rename(path, path.with_name(f"{path.name}.replaying-{os.getpid()}-{self._handoffs}"))
        except OSError:
            return
        finally:
            os.close(fd)

    async def _replay_file(self, path: Path, deliver: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
        taken = await asyncio.to_thread(_take, path)
        if taken is None:
            return 0
        fd, lines = taken
        done = 0
        try:
            for line in lines:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    # Only a write cut short by a crash, never answered 200: nothing to keep.
                    log.warning("skipping a torn line in the webhook spool", extra={"path": str(path)})
                else:
                    await deliver(record)
                done += 1
        finally:
            await asyncio.to_thread(_keep_rest, fd, path, lines[done:])
        return done


def _take(path: Path) -> tuple[int, list[bytes]] | None:
    """The file opened and locked against other replayers, with its lines; None if it is not ours to replay."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # against another process replaying it
        # Another replayer may have replaced the file since we opened it: its old lines are done.
        if os.fstat(fd).st_ino != _inode(path):
            raise BlockingIOError
        with os.fdopen(os.dup(fd), "rb") as file:
            return fd, [line for line in file.read().splitlines() if line.strip()]
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise


def _keep_rest(fd: int, path: Path, rest: list[bytes]) -> None:
    """Replace ``path`` by its undelivered ``rest`` (or remove it), atomically, then let go of its lock.

    The rest goes to a new file, fsync'd, renamed over the old one: a crash at any point leaves
    either file whole. One that loses the rename brings back lines already delivered, which the
    consumer's per-key marks apply once.
    """
    rest_path = path.with_name(f".{path.name}.rest")  # outside both globs
    try:
        if rest:
            out = os.open(rest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                unwritten = memoryview(b"".join(line + b"\n" for line in rest))
                while unwritten:
                    unwritten = unwritten[os.write(out, unwritten) :]
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(rest_path, path)
        else:
            os.unlink(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rest_path)  # left by a crash before its rename
    finally:
        os.close(fd)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
