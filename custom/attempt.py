"""One HTTP exchange within its bounds: a wall-clock limit on all of it, and a cap on the body size.

``send`` returns once the headers are in; ``read_body`` reads the whole (decoded) body. Both stop
at ``limit_at`` on the clock's monotonic reading, whatever the server does (drip one byte a second,
never finish). A failure is raised as ``AttemptFailed`` (classified, see ``failures``) or
``BodyTooLarge``; the caller turns them into typed errors with its own words and redactor.
The API transport and the token sources both send through here.
"""

from __future__ import annotations

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


def _timed_out(bound: str, *, never_sent: bool) -> AttemptFailed:
    failure = Failure(TIMEOUT, f"no complete answer within the {bound}", never_sent, True, "timed out", bound)
    return AttemptFailed(failure, bound=bound)


async def close(response: httpx.Response) -> None:
    """Close ``response``, handing its connection back even when the caller is being cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await response.aclose()
        except NETWORK_ERRORS:
            pass  # the connection is broken anyway; nothing more to hand back


async def send(
    inner: httpx.AsyncBaseTransport, request: httpx.Request, *, clock: Clock, limit_at: float, bound: str
) -> httpx.Response:
    """The response to ``request`` with its headers read, its body still streaming.

    ``bound`` names the limit that ``limit_at`` comes from (for messages): "timeout" or "deadline".
    """
    try:
        with clock.cancel_at(limit_at) as scope:
            response = await inner.handle_async_request(request)
    except NETWORK_ERRORS as exc:
        raise AttemptFailed(classify(exc), cause=exc) from exc
    if scope.cancelled_caught:
        # Headers never came, so nothing proves the request was not sent.
        raise _timed_out(bound, never_sent=False)
    return response


async def read_body(
    response: httpx.Response, *, clock: Clock, limit_at: float, bound: str, max_bytes: int
) -> None:
    """Read the whole body into ``response`` (``response.content``), decoded, at most ``max_bytes``.

    The response is closed on every path; on failure its connection is discarded.
    """
    try:
        declared = int(response.headers.get("content-length", "-1"))
    except ValueError:
        declared = -1
    if declared > max_bytes:
        await close(response)
        raise BodyTooLarge(max_bytes)
    try:
        with clock.cancel_at(limit_at) as scope:
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
    if scope.cancelled_caught:
        await close(response)
        raise _timed_out(bound, never_sent=False)
