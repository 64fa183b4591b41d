"""Background tasks that live as long as the app: started in ``cleanup_ctx``, stopped within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0


@contextlib.asynccontextmanager
async def running(
    work: Coroutine[Any, Any, None],
    *,
    name: str,
    stop: Callable[[], None] | None = None,
    stop_within: float = STOP_TIMEOUT,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` while the block runs; on exit, ask it to ``stop``, cancel it, and wait at most ``stop_within`` s.

    ``stop`` is for loops that call redis-py: a cancellation that lands while it is still
    connecting can be lost (seen on Python 3.11), so such a loop also checks a flag.
    """
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        if stop is not None:
            stop()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=stop_within)
        if not done:
            log.warning("%s did not stop within %gs; leaving it to the store's close", name, stop_within)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with an error: %r", name, task.exception())
