"""The local budget's protocol: JSON lines between a parent's ``BudgetServer`` and its workers'
``BudgetLink``s over loopback TCP, and the few stream helpers both ends use.

A worker says ``hello`` with the server's key, then asks for tickets (``want``: how many more of
its callers are waiting), reports the ones it spent and when (``spent``), hands back the ones it
will not spend (``back``) and passes on 429s (``429``). The server answers with ``grant``s: a
lease of one or more tickets. Each side batches what it has to say during one turn of its event
loop into one send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import msgspec

from ..ratelimit import UNLIMITED, Unlimited

READ_SIZE = 1 << 16
MAX_LINE = 1 << 20
MAX_LEASE = 50
LEASE_RATE_DIVISOR = 100


def lease_size(limit: float | Unlimited) -> int:
    """Tickets per grant at ``limit`` requests/s: about 1% of a second's budget (as
    ``RedisTokenBucket`` leases), at least 1 and at most ``MAX_LEASE``; 1 at low rates, where
    every request is a round trip as it always was."""
    if limit is UNLIMITED:
        return MAX_LEASE
    return max(1, min(MAX_LEASE, int(limit // LEASE_RATE_DIVISOR)))


class Message(msgspec.Struct, tag_field="t"):
    """A line on the socket: ``{"t": "<kind>", ...}``."""


class Hello(Message, tag="hello"):
    key: str


class Want(Message, tag="want"):
    api: str
    n: int


class Spent(Message, tag="spent"):
    api: str
    tickets: list[tuple[int, float]]


class Back(Message, tag="back"):
    api: str
    tickets: list[int]


class Limited(Message, tag="429"):
    api: str
    retry_after: float | None


class Grant(Message, tag="grant"):
    api: str
    tickets: list[int]


encode = msgspec.json.Encoder().encode
decode_hello = msgspec.json.Decoder(Hello).decode
decode_from_worker = msgspec.json.Decoder(Want | Spent | Back | Limited).decode
decode_from_parent = msgspec.json.Decoder(Grant).decode


class Outbox:
    """Messages for one peer, written by one task: everything queued during a turn goes in one send."""

    def __init__(self, stream: anyio.abc.ByteSendStream) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._ready = anyio.Event()

    def put(self, message: Message) -> None:
        self._lines.append(encode(message) + b"\n")
        self._ready.set()

    def take(self) -> bytes:
        """Everything queued and not yet sent (the outbox forgets it)."""
        data, self._lines = b"".join(self._lines), []
        return data

    async def run(self) -> None:
        """Until the peer is gone (its reader notices that too)."""
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            try:
                await self._stream.send(self.take())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return


@contextlib.asynccontextmanager
async def background(*tasks: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run ``tasks`` (which never raise) while the block runs; the block's own exception comes
    out as it was raised, not wrapped in an exception group."""
    group = anyio.create_task_group()
    await group.__aenter__()
    try:
        for task in tasks:
            group.start_soon(task)
        yield
    finally:
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)


async def lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[bytes]:
    """The stream's newline-terminated lines until it ends (or breaks)."""
    pending = b""
    while True:
        try:
            chunk = await stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE:
            return  # no peer of ours sends such a line: treat it as gone
        for line in complete:
            if line:
                yield line
