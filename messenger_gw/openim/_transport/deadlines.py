"""Read and total deadlines for many concurrent calls, kept by one periodic check.

Timers per call (aiohttp's ``sock_read`` and ``total``, or ``asyncio.timeout``) are
armed and cancelled on every call, and a read timer again on every chunk received:
about 4% of the /im path's CPU time when measured with aiohttp's
(``docs/performance.md``). Here a call's deadline is an entry in a
set; while any call is watched, one task looks every :data:`GRANULARITY` seconds
and cancels the task of each call whose deadline has passed, which then sees
``TimeoutError`` (as with ``asyncio.timeout``, whose cancel-and-uncancel scheme
this follows). A deadline may fire up to one granularity late.

A deadline bounds the time a call waits on its peer, not the time its caller
spends on what it received: a caller that streams an answer on to a slow client
pauses it (:meth:`Deadline.pause`) after each part and resumes it
(:meth:`Deadline.resume`) when it waits for the next. While it runs, it fires
``read`` after it started or last resumed, or once it has run ``total`` in all,
whichever comes first.
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
        deadline = Deadline(self, asyncio.current_task())
        deadline.resume()
        return deadline

    def _watch(self, deadline: Deadline) -> None:
        self._watched.add(deadline)
        loop = deadline._task.get_loop()
        if self._checker is None or self._checker.get_loop() is not loop:
            self._checker = loop.create_task(self._check())

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
    __slots__ = ("_deadlines", "_ends", "_left", "_task", "due", "expired")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object] | None) -> None:
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        self._deadlines = deadlines
        self._task = task
        self._left = deadlines.total  # of the total, while paused
        self._ends = self.due = 0.0  # while running: when the total runs out, when the deadline fires
        self.expired = False

    def pause(self) -> None:
        """The caller has what it waited for: until :meth:`resume`, its time is not the peer's."""
        self._deadlines._forget(self)
        self._left = self._ends - self._task.get_loop().time()

    def resume(self) -> None:
        """The caller waits on the peer again: the read deadline starts again, the total goes on."""
        if self.expired:  # its cancellation is on its way: a second one would not be told from any other
            return
        now = self._task.get_loop().time()
        self._ends = now + self._left
        self.due = min(self._ends, now + self._deadlines.read)
        self._deadlines._watch(self)

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
