"""A local append-only spool for after-events that arrive while the store is unreachable.

OpenIM never retries an after-callback, so an event the gateway answered 200
must not depend on the store being up at that moment. Each process appends to
its own file (``webhooks-<pid>.jsonl`` in ``WEBHOOK_SPOOL_DIR``), one JSON
line an event, flushed and fsync'd before the answer. A replayer moves the
lines of every spool file into the stream once the store answers again; a file
is replayed under an exclusive lock, so two processes never replay one file.
A spool full beyond ``max_bytes`` refuses new events (the receiver then
answers 503 rather than pretend it kept one).
"""

from __future__ import annotations

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

    def append(self, record: dict[str, Any]) -> None:
        """Keep ``record`` durably (written and fsync'd) before returning."""
        self._folder.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps(record) + b"\n"
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
        if not self._folder.is_dir():
            return 0
        for path in sorted(self._folder.glob(self.LIVE)):
            self._move_aside(path)
        moved = 0
        for path in sorted(self._folder.glob(self.REPLAYING)):
            moved += await self._replay_file(path, deliver)
        return moved

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
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # against another process replaying it
            except BlockingIOError:
                return 0
            with os.fdopen(os.dup(fd), "rb") as file:
                lines = [line for line in file.read().splitlines() if line.strip()]
            done = 0
            try:
                for line in lines:
                    await deliver(orjson.loads(line))
                    done += 1
            finally:
                rest = b"".join(line + b"\n" for line in lines[done:])
                os.ftruncate(fd, 0)
                if rest:
                    os.pwrite(fd, rest, 0)
                os.fsync(fd)
                if not rest:
                    os.unlink(path)
            return done
        finally:
            os.close(fd)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
