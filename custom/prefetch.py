"""Work started ahead of its consumer (the next page of a list), cancellable when nobody wants it.

``Prefetcher.start(work)`` runs the coroutine ``work`` in the background and returns its ``Ahead``:
``await ahead.result()`` gives what it returned or raises what it raised, in the consumer's own
task; ``cancel()`` stops it. Two kinds, one behaviour:

- ``TaskGroupPrefetcher`` runs each piece of work in an anyio task group (any backend, trio too);
- ``AsyncioPrefetcher`` makes each an asyncio task directly: no task group bookkeeping, cancel
  scope or event per page, a fraction of the cost. It keeps the tasks it started, to cancel them
  all when its owner closes.

A piece of work never outlives its prefetcher: ``aclose`` cancels what is still running and waits
for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc

from .errors import AmperityError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_CLOSED = "the client was closed while the next page was being fetched"


class PrefetchClosed(AmperityError):
    """The prefetcher was closed (its client left ``async with``) before the work was done."""

    def __init__(self) -> None:
        super().__init__(_CLOSED)


class Ahead(Protocol[T_co]):
    async def result(self) -> T_co:
        """What the work returned, or the exception it raised (``PrefetchClosed`` when cut short)."""
        ...

    def cancel(self) -> None:
        """Stop the work if it is still running (safe to call at any time, even after the loop is gone)."""
        ...

    async def wait(self) -> None:
        """Return once the work has stopped, whatever its outcome; never raises."""
        ...


class Prefetcher(Protocol):
    def start(self, work: Coroutine[Any, Any, T]) -> Ahead[T]: ...

    async def aclose(self) -> None: ...


class _GroupAhead(Generic[T]):
    __slots__ = ("_done", "_error", "_finished", "_scope", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._scope = anyio.CancelScope()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._finished = False

    async def run(self, work: Coroutine[Any, Any, T]) -> None:
        try:
            if self._scope.cancel_called:
                work.close()  # cancelled before it started: never run, never awaited
                return
            with self._scope:
                try:
                    self._value = await work
                    self._finished = True
                except Exception as exc:  # handed to the consumer, who raises it in its own task
                    self._error = exc
        finally:
            if not self._finished and self._error is None:
                self._error = PrefetchClosed()
            self._done.set()

    async def result(self) -> T:
        try:
            await self._done.wait()
        except BaseException:
            self.cancel()  # the consumer was cancelled while it waited: nobody wants the result now
            raise
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        if not self._done.is_set():
            try:
                self._scope.cancel()
            except RuntimeError:
                pass  # the event loop is already gone, and the work with it

    async def wait(self) -> None:
        await self._done.wait()


class TaskGroupPrefetcher:
    """Work run in ``task_group``; closing the group's scope cancels it all."""

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    def start(self, work: Coroutine[Any, Any, T]) -> Ahead[T]:
        ahead: _GroupAhead[T] = _GroupAhead()
        self._task_group.start_soon(ahead.run, work)
        return ahead

    async def aclose(self) -> None:
        self._task_group.cancel_scope.cancel()


class _TaskAhead(Generic[T]):
    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[T]) -> None:
        self._task = task

    async def result(self) -> T:
        # Awaited directly: a consumer cancelled while it waits cancels the work too (nobody will
        # ask for its result any more), as the task group's kind does.
        task = self._task
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and not _cancelling(asyncio.current_task()):
                raise PrefetchClosed() from None  # cancelled by its prefetcher, not its consumer
            raise

    def cancel(self) -> None:
        task = self._task
        if not task.done():
            try:
                task.cancel()
            except RuntimeError:
                pass  # the event loop is already gone, and the work with it

    async def wait(self) -> None:
        if not self._task.done():
            await asyncio.wait((self._task,))


def _cancelling(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and task.cancelling() > 0


class AsyncioPrefetcher:
    """Work run as plain asyncio tasks of the running loop."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self._closed = False

    def start(self, work: Coroutine[Any, Any, T]) -> Ahead[T]:
        if self._closed:
            work.close()
            raise PrefetchClosed()
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return _TaskAhead(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            # Marks an error as seen: work whose consumer went away is not logged as a failure.
            task.exception()

    async def aclose(self) -> None:
        self._closed = True
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
