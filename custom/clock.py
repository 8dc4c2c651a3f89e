"""Monotonic time and sleeping, injectable so that timing logic is tested without waiting.

``SystemClock`` is what the client uses. ``ManualClock`` keeps virtual time that only moves when a
test calls ``advance``; rate limiters, retry backoff and anything else written against ``Clock``
then run deterministically, on asyncio and on trio.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import attrs
import sniffio


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences between two readings mean anything."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once, after a checkpoint, if it already is)."""
        ...


class SystemClock:
    """``time.monotonic`` and the running event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        # anyio.sleep_until would read the backend's clock, which on trio carries a random offset
        # from time.monotonic; a relative sleep keeps one time base.
        await anyio.sleep(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return "SystemClock()"


@attrs.define(eq=False)
class _Sleeper:
    deadline: float
    order: int
    woken: anyio.Event
    cancelled: bool = False

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class ManualClock:
    """Virtual monotonic time for deterministic tests.

    ``sleep_until`` blocks until ``advance`` moves time to the deadline. ``advance`` first lets every
    runnable task run (so tasks just started get to register their sleeps), then wakes sleepers one
    at a time in deadline order (ties in the order they started sleeping), setting ``now()`` to each
    sleeper's deadline and letting the program run until every task is blocked again before it
    wakes the next. Code under test therefore observes exactly the times it asked for.

    Drive it from one task at a time. "Every task blocked" is detected exactly on trio and, on
    asyncio, by yielding to the loop until no task is ready to run; code that waits on real I/O
    counts as blocked, so use it with in-memory transports.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are waiting for time to move (for assertions in tests)."""
        return sum(1 for sleeper in self._sleepers if not sleeper.cancelled)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(deadline, next(self._order), anyio.Event())
        heapq.heappush(self._sleepers, sleeper)
        try:
            await sleeper.woken.wait()
        except BaseException:
            # Left in the heap and skipped when its time comes: removal from the middle of a heap
            # would cost more than the skip.
            sleeper.cancelled = True
            raise

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back: advance({seconds!r})")
        target = self._now + seconds
        await _wait_all_tasks_blocked()
        while self._sleepers and self._sleepers[0].deadline <= target:
            sleeper = heapq.heappop(self._sleepers)
            if sleeper.cancelled:
                continue
            self._now = max(self._now, sleeper.deadline)
            sleeper.woken.set()
            await _wait_all_tasks_blocked()
        self._now = target

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, pending_sleepers={self.pending_sleepers})"


async def _wait_all_tasks_blocked() -> None:
    if sniffio.current_async_library() == "trio":
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    import asyncio

    this_task = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        if all(task is this_task or _asyncio_task_blocked(task) for task in asyncio.all_tasks()):
            return


def _asyncio_task_blocked(task: object) -> bool:
    # A task awaiting an unfinished future is blocked; one with no future (or a finished one) is
    # ready to run. anyio's own wait_all_tasks_blocked reads the same attribute.
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()
