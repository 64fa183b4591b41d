"""Read and total deadlines kept by one periodic check: they fire, late by at most a granularity, and only they;
paused, they count no time."""

from __future__ import annotations

import asyncio
import time

import pytest

from messenger_gw.openim import Deadlines

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
                deadline.pause()  # a part arrived ...
                deadline.resume()  # ... and the caller waits for the next at once
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


async def test_each_resume_restarts_the_read_deadline_but_not_the_total() -> None:
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


async def in_turns(deadlines: Deadlines, *, wait: float, work: float, turns: int, waited: list[float]) -> None:
    """``turns`` times: wait ``wait`` seconds as on the peer, then work ``work`` seconds with the deadline paused,
    as when writing what arrived to a slow client. Each wait's length goes to ``waited``."""
    deadline = deadlines.start()
    try:
        for _ in range(turns):
            started = time.monotonic()
            try:
                await asyncio.sleep(wait)
            finally:
                waited.append(time.monotonic() - started)
            deadline.pause()
            await asyncio.sleep(work)
            deadline.resume()
    except BaseException as exc:
        failure = deadline.stop(exc)
        if failure is exc:
            raise
        assert failure is not None
        raise failure from exc
    deadline.stop(None)


async def test_time_paused_counts_toward_neither_deadline() -> None:
    deadlines = Deadlines(read=0.1, total=0.3, granularity=GRANULARITY)
    waited: list[float] = []
    await in_turns(deadlines, wait=0.05, work=0.2, turns=4, waited=waited)  # 1 s in all, 0.2 s of it waiting
    assert len(waited) == 4


async def test_the_total_adds_up_the_waits_only() -> None:
    deadlines = Deadlines(read=0.1, total=0.3, granularity=GRANULARITY)
    waited: list[float] = []
    with pytest.raises(TimeoutError):
        await in_turns(deadlines, wait=0.08, work=0.1, turns=100, waited=waited)
    assert 0.29 <= sum(waited) < 0.3 + 5 * GRANULARITY  # measured just inside the watched time
    assert len(waited) in (4, 5)  # under the read deadline each, over the total together


async def test_a_paused_deadline_does_not_fire() -> None:
    deadlines = Deadlines(read=0.05, total=0.1, granularity=GRANULARITY)
    deadline = deadlines.start()
    deadline.pause()
    await asyncio.sleep(0.3)
    assert deadline.stop(None) is None
    assert not deadline.expired
    await asyncio.sleep(3 * GRANULARITY)
    assert deadlines._checker is None  # nothing watched, so nothing checks
