"""The bounds of a call, and what the auth flow tells the transport about the call it is in.

A call is everything one request to the API takes: getting a token, waiting for the rate limiter,
each attempt, the waits between retries and the replay after a 401. ``Bounds`` says how long and
how much it may take. The outermost layer that sees the call (the auth flow, or the transport when
used alone) starts a ``CallContext`` and carries it on the request, where each layer below finds it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import attrs
import httpx

from .clock import Clock

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_EXTENSION = "amperity_async.call"


def _seconds_or_none(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{attribute.name} must be a positive number of seconds or None, got {value!r}")


def _byte_count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive number of bytes, got {value!r}")


@attrs.frozen
class Bounds:
    """How long and how much a call may take.

    - ``timeout``: wall seconds for one attempt, all of it: connecting, sending, the headers and
      the whole body (not per read: a server that drips a byte a second still hits it).
    - ``deadline``: wall seconds for the whole call, from the token request to the last byte of
      the last attempt, retries, rate-limit waits and the replay after a 401 included.
    - ``max_response_bytes``: the largest body read, counted after decompression while it streams
      in, so that an endless body or a gzip bomb stops there.
    """

    timeout: float | None = attrs.field(default=DEFAULT_TIMEOUT, validator=_seconds_or_none)
    deadline: float | None = attrs.field(default=None, validator=_seconds_or_none)
    max_response_bytes: int = attrs.field(default=DEFAULT_MAX_RESPONSE_BYTES, validator=_byte_count)

    def httpx_timeout(self) -> httpx.Timeout:
        """Per-phase timeouts for the inner transport: never longer than one attempt may last."""
        return httpx.Timeout(self.timeout)


DEFAULT_BOUNDS = Bounds()


class _URL(Protocol):
    @property
    def path(self) -> str: ...


class Outgoing(Protocol):
    """What the layers of a call read and change on its request: an ``httpx.Request`` on the
    generic path, a ``fastwire.WireRequest`` on the fast one."""

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> _URL: ...

    @property
    def headers(self) -> MutableMapping[str, str]: ...


Authorize = Callable[[Outgoing], Awaitable[None]]


@attrs.define(eq=False)
class CallContext:
    """One call in progress.

    ``deadline_at`` is on the clock's monotonic reading (``math.inf``: none); ``authorize``, when
    set, puts a current token on the request and is called by the transport before every attempt,
    after the rate limiter's wait.
    """

    deadline_at: float = math.inf
    deadline: float | None = None
    authorize: Authorize | None = None

    @classmethod
    def start(cls, deadline: float | None, clock: Clock) -> CallContext:
        """A call starting now, to end within ``deadline`` seconds (``None``: no deadline)."""
        deadline_at = math.inf if deadline is None else clock.now() + deadline
        return cls(deadline_at=deadline_at, deadline=deadline)

    @staticmethod
    def of(request: httpx.Request) -> CallContext | None:
        context = request.extensions.get(_EXTENSION)
        return context if isinstance(context, CallContext) else None

    def attach(self, request: httpx.Request) -> None:
        request.extensions[_EXTENSION] = self

    def deadline_text(self) -> str:
        return "the call's deadline" + ("" if self.deadline is None else f" of {self.deadline:g} s")
