"""One HTTP exchange within its bounds: a wall-clock limit on all of it, and a cap on the body size.

``send`` returns once the headers are in; ``read_body`` reads the whole (decoded) body; ``bounded``
around both stops them at a time on the clock's monotonic reading, whatever the server does (drip
one byte a second, never finish). A failure is raised as ``AttemptFailed`` (classified, see
``failures``) or ``BodyTooLarge``; the caller turns them into typed errors with its own words and
redactor. The API transport and the token sources both send through here.
"""

from __future__ import annotations

import math
from types import TracebackType

import anyio
import httpx

from .clock import Clock
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


class bounded:  # lower case: used like a function, ``with bounded(...):``
    """``with bounded(clock, limit_at, bound):`` — the block is cancelled once ``clock.now()``
    reaches ``limit_at`` (``math.inf``: never), and then raises ``AttemptFailed`` (a timeout) naming
    ``bound`` ("timeout" or "deadline"). One scope covers the whole exchange: headers and body."""

    __slots__ = ("_bound", "_scope")

    def __init__(self, clock: Clock, limit_at: float, bound: str) -> None:
        self._scope = None if limit_at == math.inf else clock.cancel_at(limit_at)
        self._bound = bound

    def __enter__(self) -> None:
        if self._scope is not None:
            self._scope.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
