"""One HTTP exchange within its bounds: a wall-clock limit on all of it, and a cap on the body size.

``send`` returns once the headers are in; ``read_body`` reads the whole (decoded) body; ``bounded``
around both stops them at a time on the clock's monotonic reading, whatever the server does (drip
one byte a second, never finish). A failure is raised as ``AttemptFailed`` (classified, see
``failures``) or ``BodyTooLarge``; the caller turns them into typed errors with its own words and
redactor. The API transport and the token sources both send through here.

A ``Wire`` is what the transport's retry loop sends through: ``HttpxWire`` (below) over any httpx
transport, or ``fastwire.AiohttpWire`` straight over aiohttp; the loop and its policies are the
same for both.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Protocol, TypeVar

import anyio
import httpx

from .clock import Clock, SystemClock
from .failures import NETWORK_ERRORS, TIMEOUT, Failure, classify


class AttemptFailed(Exception):
    """The exchange failed; ``failure`` says how. ``bound`` names the time bound that was hit, for
    a timeout this module enforced (``None`` when the failure came from below)."""

    def __init__(
        self, failure: Failure, *, cause: BaseException | None = None, bound: str | None = None
    ) -> None:
        self.failure, self.cause, self.bound = failure, cause, bound
        super().__init__(failure.detail)


class BodyTooLarge(Exception):
    """The body exceeded the size cap (after decompression)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"body exceeds {limit} bytes")


def _timed_out(bound: str) -> AttemptFailed:
    # Whatever arrived, the answer was not complete: nothing proves the request was not sent.
    failure = Failure(TIMEOUT, f"no complete answer within the {bound}", False, True, "timed out", bound)
    return AttemptFailed(failure, bound=bound)


async def close(response: httpx.Response) -> None:
    """Close ``response``, handing its connection back even when the caller is being cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await response.aclose()
        except NETWORK_ERRORS:
            pass  # the connection is broken anyway; nothing more to hand back


class _LoopDeadline:
    """What ``asyncio.timeout_at`` does, as a plain context manager and at a third of anyio's
    cost: the task is cancelled at ``when`` (the loop's time), and on the way out the cancellation
    this caused, and only that one, is told apart from any other (``fired``)."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_loop", "_task", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._loop, self._when, self._fired = loop, when, False

    def __enter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("an attempt runs inside a task")
        self._task, self._cancelling = task, task.cancelling()
        self._handle = self._loop.call_at(self._when, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def fired(self, exc_type: type[BaseException] | None) -> bool:
        """Call on the way out: whether the block was stopped by this deadline (and no one else)."""
        self._handle.cancel()
        return (
            self._fired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError
        )


class bounded:  # lower case: used like a function, ``with bounded(...):``
    """``with bounded(clock, limit_at, bound):`` — the block is cancelled once ``clock.now()``
    reaches ``limit_at`` (``math.inf``: never), and then raises ``AttemptFailed`` (a timeout) naming
    ``bound`` ("timeout" or "deadline"). One scope covers the whole exchange: headers and body.

    With the system clock on asyncio the deadline is a timer of the event loop (``_LoopDeadline``);
    otherwise (trio, a test's virtual clock) the clock's cancel scope."""

    __slots__ = ("_bound", "_loop_deadline", "_scope")

    def __init__(self, clock: Clock, limit_at: float, bound: str) -> None:
        self._bound = bound
        self._scope: anyio.CancelScope | None = None
        self._loop_deadline: _LoopDeadline | None = None
        if limit_at == math.inf:
            return
        if isinstance(clock, SystemClock):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # trio: anyio's scope below
            else:
                self._loop_deadline = _LoopDeadline(loop, loop.time() + (limit_at - clock.now()))
                return
        self._scope = clock.cancel_at(limit_at)

    def __enter__(self) -> None:
        if self._loop_deadline is not None:
            self._loop_deadline.__enter__()
        elif self._scope is not None:
            self._scope.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop_deadline is not None:
            if self._loop_deadline.fired(exc_type):
                raise _timed_out(self._bound) from None
            return
        scope = self._scope
        if scope is not None:
            scope.__exit__(exc_type, exc, tb)
            # The scope swallows only the cancellation it caught: that is replaced here.
            if scope.cancelled_caught:
                raise _timed_out(self._bound)


async def send(inner: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
    """The response to ``request`` with its headers read, its body still streaming."""
    try:
        return await inner.handle_async_request(request)
    except NETWORK_ERRORS as exc:
        raise AttemptFailed(classify(exc), cause=exc) from exc


async def read_body(response: httpx.Response, max_bytes: int) -> None:
    """Read the whole body into ``response`` (``response.content``), decoded, at most ``max_bytes``.

    On any failure (cancellation included) the response is closed and its connection discarded.
    """
    try:
        declared = int(response.headers.get("content-length", "-1"))
    except ValueError:
        declared = -1
    if declared > max_bytes:
        await close(response)
        raise BodyTooLarge(max_bytes)
    try:
        chunks: list[bytes] = []
        size = 0
        # Decoded chunks: a gzip bomb is caught after one chunk's worth of inflation.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
        # What httpx's own aread() does once the stream is consumed.
        response._content = b"".join(chunks)
    except NETWORK_ERRORS as exc:
        await close(response)
        raise AttemptFailed(classify(exc), cause=exc) from exc
    except BaseException:
        await close(response)
        raise


Q_contra = TypeVar("Q_contra", contravariant=True)
R = TypeVar("R")
_DEPRECATION_HEADERS = (b"deprecation", b"sunset")


class Wire(Protocol[Q_contra, R]):
    """One way of sending a request of type ``Q_contra`` and reading its answer ``R``, for the
    transport's retry loop. ``send`` and ``read_body`` raise ``AttemptFailed`` or ``BodyTooLarge``
    as the functions above do; ``close`` hands the connection back whatever happens."""

    async def send(self, request: Q_contra) -> R: ...

    async def read_body(self, response: R, max_bytes: int) -> None: ...

    async def close(self, response: R) -> None: ...

    def status(self, response: R) -> int: ...

    def header(self, response: R, name: str) -> str | None: ...

    def deprecation(self, response: R) -> tuple[str | None, str | None] | None:
        """The ``Deprecation`` and ``Sunset`` headers, or None when the answer carries neither."""
        ...


class HttpxWire:
    """A ``Wire`` over an httpx transport (httpx-aiohttp, httpx's own, a test's MockTransport)."""

    __slots__ = ("inner",)

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def send(self, request: httpx.Request) -> httpx.Response:
        return await send(self.inner, request)

    async def read_body(self, response: httpx.Response, max_bytes: int) -> None:
        await read_body(response, max_bytes)

    async def close(self, response: httpx.Response) -> None:
        await close(response)

    def status(self, response: httpx.Response) -> int:
        return response.status_code

    def header(self, response: httpx.Response, name: str) -> str | None:
        value: str | None = response.headers.get(name)
        return value

    def deprecation(self, response: httpx.Response) -> tuple[str | None, str | None] | None:
        # Runs on every answer until the operation has warned: one pass over the raw headers
        # costs less than two lookups by name in httpx's headers.
        for key, _ in response.headers.raw:
            if key.lower() in _DEPRECATION_HEADERS:
                return response.headers.get("deprecation"), response.headers.get("sunset")
        return None
