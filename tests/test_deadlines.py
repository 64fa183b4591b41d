"""Read and total deadlines kept by one periodic check: they fire, late by at most a granularity, and only they."""

from __future__ import annotations

import asyncio
import time

import pytest

from messenger_gw.deadlines import Deadlines

GRANULARITY = 0.02


async def watched(deadlines: Deadlines, work: float, *, progress_every: float | None = None) -> float:
    """Run ``work`` seconds under a deadline; the seconds it took."""
    started = time.monotonic()
    deadline = deadlines.start()
    try:
        if progress_every is None:
            await asyncio.sleep(work)
        else:
            while time.monotonic() - started < work:
                await asyncio.sleep(progress_every)
                deadline.progress()
    except BaseException as exc:
        failure = deadline.stop(exc)
        if failure is exc:
            raise
        assert failure is not None
        raise failure from exc
    deadline.stop(None)
    return time.monotonic() - started


async def test_a_call_past_its_read_deadline_times_out_within_a_granularity() -> None:
    deadlines = Deadlines(read=0.1, total=1, granularity=GRANULARITY)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await watched(deadlines, 5)
    assert 0.1 <= time.monotonic() - started < 0.1 + 5 * GRANULARITY


async def test_progress_restarts_the_read_deadline_but_not_the_total() -> None:
    deadlines = Deadlines(read=0.1, total=0.4, granularity=GRANULARITY)
    assert await watched(deadlines, 0.25, progress_every=0.03) >= 0.25  # longer than read, shorter than total
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await watched(deadlines, 5, progress_every=0.03)
    assert 0.4 <= time.monotonic() - started < 0.4 + 5 * GRANULARITY


async def test_a_call_in_time_is_untouched_and_nothing_stays_watched() -> None:
    deadlines = Deadlines(read=0.2, total=1, granularity=GRANULARITY)
    results = await asyncio.gather(*(watched(deadlines, 0.01 * i) for i in range(10)))
    assert len(results) == 10
    await asyncio.sleep(3 * GRANULARITY)
    assert deadlines._checker is None  # the checking task ends when nothing is watched


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(read=1, total=1, granularity=GRANULARITY)
    call = asyncio.create_task(watched(deadlines, 5))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_only_the_deadline_of_the_slow_call_fires() -> None:
    deadlines = Deadlines(read=0.1, total=1, granularity=GRANULARITY)
    slow, quick = await asyncio.gather(watched(deadlines, 5), watched(deadlines, 0.02), return_exceptions=True)
    assert isinstance(slow, TimeoutError)
    assert isinstance(quick, float)


@pytest.mark.parametrize(("read", "total", "granularity"), [(0, 1, 0.05), (2, 1, 0.05), (1, 1, 0)])
def test_nonsensical_bounds_are_refused(read: float, total: float, granularity: float) -> None:
    with pytest.raises(ValueError, match="read and total"):
        Deadlines(read=read, total=total, granularity=granularity)
