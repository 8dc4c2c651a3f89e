"""Time for the whole library: one injectable ``Clock`` carrying both readings it needs.

``now()`` is monotonic (waits, timeouts, deadlines, rate limits); ``time()`` is the wall clock in
epoch seconds (token expiries, ``Retry-After`` dates). ``sleep_until`` and ``cancel_at`` wait on
the monotonic reading. ``SystemClock`` is what the client uses. ``ManualClock`` keeps virtual time
that only moves when a test calls ``advance``; rate limiters, retry backoff, timeouts, token
expiry and anything else written against ``Clock`` then run deterministically, on asyncio and on
trio.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
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

    def time(self) -> float:
        """Wall-clock time in epoch seconds (may jump; never used to measure waits)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once, after a checkpoint, if it already is)."""
        ...

    def cancel_at(self, deadline: float) -> anyio.CancelScope:
        """A cancel scope that cancels itself once ``now() >= deadline`` (``math.inf``: never).

        Enter it around the awaits to bound; ``cancelled_caught`` tells afterwards whether it fired.
        """
        ...


class SystemClock:
    """``time.monotonic``, ``time.time`` and the running event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        # anyio.sleep_until would read the backend's clock, which on trio carries a random offset
        # from time.monotonic; a relative sleep keeps one time base.
        await anyio.sleep(max(0.0, deadline - time.monotonic()))

    def cancel_at(self, deadline: float) -> anyio.CancelScope:
        if deadline == math.inf:
            return anyio.CancelScope()
        # The backend's clock has its own base (see sleep_until): convert through the time left.
        return anyio.CancelScope(deadline=anyio.current_time() + (deadline - time.monotonic()))

    def __repr__(self) -> str:
        return "SystemClock()"


@attrs.define(eq=False)
class _Timer:
    """Something that happens when virtual time reaches ``deadline``: a sleeper wakes, or a cancel
    scope fires."""

    deadline: float
    order: int
    fire: Callable[[], None]
    is_sleeper: bool
    cancelled: bool = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class ManualClock:
    """Virtual time for deterministic tests.

    ``time()`` is ``wall_start`` plus the virtual time elapsed since ``start`` (by default a fixed
    date, 2027-01-15T08:00:00Z, so that tests never depend on today). ``sleep_until`` blocks, and a
    scope from ``cancel_at`` stays uncancelled, until ``advance`` moves time to the deadline.
    ``advance`` first lets every runnable task run (so tasks just started get to register their
    sleeps), then wakes sleepers one at a time in deadline order (ties in the order they started
    sleeping), setting ``now()`` to each sleeper's deadline and letting the program run until every
    task is blocked again before it wakes the next. Code under test therefore observes exactly the
    times it asked for.

    Drive it from one task at a time. "Every task blocked" is detected exactly on trio and, on
    asyncio, by yielding to the loop until no task is ready to run; code that waits on real I/O
    counts as blocked, so use it with in-memory transports.
    """

    def __init__(self, start: float = 0.0, *, wall_start: float = 1_800_000_000.0) -> None:
        self._start = float(start)
        self._now = float(start)
        self._wall_start = float(wall_start)
        self._timers: list[_Timer] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self._wall_start + (self._now - self._start)

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are waiting for time to move (for assertions in tests)."""
        return sum(1 for timer in self._timers if timer.is_sleeper and not timer.cancelled)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        sleeper = _Timer(deadline, next(self._order), woken.set, is_sleeper=True)
        heapq.heappush(self._timers, sleeper)
        try:
            await woken.wait()
        except BaseException:
            # Left in the heap and skipped when its time comes: removal from the middle of a heap
            # would cost more than the skip.
            sleeper.cancelled = True
            raise

    def cancel_at(self, deadline: float) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        if deadline <= self._now:
            scope.cancel()
        elif deadline != math.inf:
            # Stays in the heap after the scope exits: cancelling an exited scope does nothing.
            heapq.heappush(self._timers, _Timer(deadline, next(self._order), scope.cancel, is_sleeper=False))
        return scope

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back: advance({seconds!r})")
        target = self._now + seconds
        await _wait_all_tasks_blocked()
        while self._timers and self._timers[0].deadline <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.deadline)
            timer.fire()
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
