"""Read and total deadlines for many concurrent calls, kept by one periodic check.

Timers per call (aiohttp's ``sock_read`` and ``total``, or ``asyncio.timeout``) are
armed and cancelled on every call, and a read timer again on every chunk received:
about 4% of the /im path's CPU time when measured with aiohttp's
(``docs/performance.md``). Here a call's deadline is an entry in a
set; while any call is watched, one task looks every :data:`GRANULARITY` seconds
and cancels the task of each call whose deadline has passed, which then sees
``TimeoutError`` (as with ``asyncio.timeout``, whose cancel-and-uncancel scheme
this follows). A deadline may fire up to one granularity late.

A call's deadline is the earlier of ``total`` after it started and ``read`` after
its last progress: the start, then each :meth:`Deadline.progress` (a chunk read).
"""

from __future__ import annotations

import asyncio

GRANULARITY = 0.05


class Deadlines:
    def __init__(self, *, read: float, total: float, granularity: float = GRANULARITY) -> None:
        if not 0 < read <= total or granularity <= 0:
            raise ValueError("read and total must be positive, read at most total, and granularity positive")
        self.read = read
        self.total = total
        self._granularity = granularity
        self._watched: set[Deadline] = set()
        self._checker: asyncio.Task[None] | None = None

    def start(self) -> Deadline:
        """Watch the current task from now; :meth:`Deadline.stop` ends it."""
        loop = asyncio.get_running_loop()
        deadline = Deadline(self, asyncio.current_task(), loop.time())
        self._watched.add(deadline)
        if self._checker is None or self._checker.get_loop() is not loop:
            self._checker = loop.create_task(self._check())
        return deadline

    def _forget(self, deadline: Deadline) -> None:
        self._watched.discard(deadline)

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._watched:
                await asyncio.sleep(self._granularity)
                now = loop.time()
                for deadline in [d for d in self._watched if d.due <= now]:
                    deadline.expire()
        finally:
            self._checker = None


class Deadline:
    __slots__ = ("_deadlines", "_ends", "_task", "due", "expired")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object] | None, now: float) -> None:
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        self._deadlines = deadlines
        self._task = task
        self._ends = now + deadlines.total
        self.due = min(self._ends, now + deadlines.read)
        self.expired = False

    def progress(self) -> None:
        """Data arrived: the read deadline starts again."""
        self.due = min(self._ends, self._task.get_loop().time() + self._deadlines.read)

    def expire(self) -> None:
        self._deadlines._forget(self)
        self.expired = True
        self._task.cancel()

    def stop(self, exc: BaseException | None) -> BaseException | None:
        """Stop watching; the exception the call should raise instead of ``exc``: a
        ``TimeoutError`` for the cancellation this deadline caused, else ``exc``."""
        self._deadlines._forget(self)
        if self.expired and self._task.uncancel() == 0 and isinstance(exc, asyncio.CancelledError):
            return TimeoutError("deadline passed")
        return exc
