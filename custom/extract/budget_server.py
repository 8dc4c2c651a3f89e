"""One rate budget for worker processes on one machine, served by their parent over loopback TCP.

The parent owns a ``TokenBucket`` per API (the rate, its FIFO order across workers, slowing down
after a 429) and a ``WindowLedger`` per API (no ``seconds``-long window holds more than the
limit, counted on the times workers report spending their grants). A worker asks for one grant
per request its client is about to send; the parent answers each with a ticket once both the
bucket and the window allow; the worker reports when it spent it, or hands it back if the request
was cancelled meanwhile. Messages are JSON lines, batched per turn of each event loop.

A worker that dies has its grants counted as spent when its socket closes. A parent that dies
closes every socket: a worker waiting for a grant then fails with ``RateLimiterUnavailableError``.
The server listens on 127.0.0.1 only, and a connection whose first line does not carry the
server's random key is hung up on, so other local users cannot draw on (or drain) the budget.
(Loopback TCP rather than a Unix socket: anyio's Unix socket stream on asyncio logs an
``InvalidStateError`` when a pending receive is cancelled as data arrives.)
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import math
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import attrs
import msgspec

from ..clock import Clock, SystemClock
from ..errors import RateLimiterUnavailableError
from ..ratelimit import UNLIMITED, RateLimiter, TokenBucket
from .budgets import APIS, Rates
from .connection import Limiter
from .ledger import WindowLedger

WINDOW_SECONDS = 1.02
"""The window guard's length: one second plus room for the jitter between a spend and its
request's arrival (as ``RedisTokenBucket``'s)."""
_READ_SIZE = 1 << 16
_MAX_LINE = 1 << 20


class _Message(msgspec.Struct, tag_field="t"):
    """A line on the socket: ``{"t": "<kind>", ...}``."""


class Hello(_Message, tag="hello"):
    key: str


class Want(_Message, tag="want"):
    api: str
    n: int


class Spent(_Message, tag="spent"):
    api: str
    tickets: list[tuple[int, float]]


class Back(_Message, tag="back"):
    api: str
    tickets: list[int]


class Limited(_Message, tag="429"):
    api: str
    retry_after: float | None


class Grant(_Message, tag="grant"):
    api: str
    ticket: int


_encode = msgspec.json.Encoder().encode
_hello = msgspec.json.Decoder(Hello)
_from_worker = msgspec.json.Decoder(Want | Spent | Back | Limited)
_from_parent = msgspec.json.Decoder(Grant)


class _Outbox:
    """Messages for one peer, written by one task: everything queued during a turn goes in one send."""

    def __init__(self, stream: anyio.abc.ByteSendStream) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._ready = anyio.Event()

    def put(self, message: _Message) -> None:
        self._lines.append(_encode(message) + b"\n")
        self._ready.set()

    async def run(self) -> None:
        """Until the peer is gone (its reader notices that too)."""
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            data, self._lines = b"".join(self._lines), []
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return


@contextlib.asynccontextmanager
async def _background(*tasks: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
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


async def _lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[bytes]:
    """The stream's newline-terminated lines until it ends (or breaks)."""
    pending = b""
    while True:
        try:
            chunk = await stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if len(pending) > _MAX_LINE:
            return  # no peer of ours sends such a line: treat it as gone
        for line in complete:
            if line:
                yield line


@attrs.define(eq=False)
class _ApiBudget:
    bucket: TokenBucket
    ledger: WindowLedger
    clock: Clock
    changed: anyio.Event = attrs.field(factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def grant(self) -> int:
        await self.bucket.acquire()
        while True:
            now = self.clock.now()
            due = self.ledger.due(now)
            if due is not None and due <= now:
                return self.ledger.grant(now)  # no await since the check: nobody took the room
            if due is None:
                await self.changed.wait()  # only a report can make room
            else:
                await self.clock.sleep_until(due)


@attrs.define(eq=False)
class _Peer:
    outbox: _Outbox
    demand: dict[str, int] = attrs.field(factory=dict)
    wanted: dict[str, anyio.Event] = attrs.field(factory=dict)
    out: dict[str, set[int]] = attrs.field(factory=dict)

    def want(self, api: str, n: int) -> None:
        self.demand[api] = self.demand.get(api, 0) + max(0, n)
        self.wanted.setdefault(api, anyio.Event()).set()

    async def next_wanted(self, api: str) -> None:
        while not self.demand.get(api):
            self.wanted[api] = event = anyio.Event()
            await event.wait()


class BudgetServer:
    """``async with BudgetServer(rates) as server``: the budget served on 127.0.0.1 until the block
    ends; ``server.budget`` is the picklable ``LocalBudget`` (address and key) workers open."""

    def __init__(
        self,
        rates: Rates | None = None,
        *,
        window_seconds: float = WINDOW_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.rates = rates = rates or Rates()
        self._clock = clock or SystemClock()
        self._apis: dict[str, _ApiBudget] = {}
        for api in APIS:
            limit = rates.limit(api)
            if limit is UNLIMITED:
                continue
            self._apis[api] = _ApiBudget(
                TokenBucket(limit, capacity=max(2.0, limit / 50), clock=self._clock),
                WindowLedger(max(1, math.floor(limit)), window_seconds),
                self._clock,
            )
        self._key = secrets.token_hex(16)
        self._port: int | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def address(self) -> str:
        if self._port is None:
            raise RuntimeError("the budget server is not running (use it as `async with BudgetServer(...)`)")
        return f"127.0.0.1:{self._port}"

    @property
    def budget(self) -> LocalBudget:
        return LocalBudget(self.address, self._key, self.rates)

    def ledger(self, api: str) -> WindowLedger | None:
        budget = self._apis.get(api)
        return budget.ledger if budget is not None else None

    async def __aenter__(self) -> BudgetServer:
        listener = await self._stack.enter_async_context(
            await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        )
        self._port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        await self._stack.enter_async_context(_background(functools.partial(listener.serve, self._serve)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        peer = _Peer(_Outbox(stream), out={api: set() for api in self._apis})
        loops = [functools.partial(self._grant_loop, peer, api) for api in self._apis]
        try:
            async with stream, _background(peer.outbox.run, *loops):
                lines = _lines(stream)
                first = await anext(lines, b"")
                try:
                    hello = _hello.decode(first)
                except msgspec.DecodeError:
                    return  # not one of our workers: hang up
                if not hmac.compare_digest(hello.key.encode(), self._key.encode()):
                    return
                async for line in lines:
                    try:
                        self._handle(peer, _from_worker.decode(line))
                    except (msgspec.DecodeError, KeyError):
                        break
        finally:
            now = self._clock.now()
            for api, tickets in peer.out.items():
                budget = self._apis[api]
                budget.ledger.abandoned(tickets, now)
                budget.notify()

    def _handle(self, peer: _Peer, message: Want | Spent | Back | Limited) -> None:
        budget = self._apis[message.api]  # KeyError: an API this budget does not limit
        out = peer.out[message.api]
        if isinstance(message, Want):
            peer.want(message.api, message.n)
        elif isinstance(message, Spent):
            now = self._clock.now()
            for ticket, at in message.tickets:
                if ticket in out:
                    out.discard(ticket)
                    budget.ledger.spent(ticket, at, now)
            budget.notify()
        elif isinstance(message, Back):
            for ticket in message.tickets:
                if ticket in out:
                    out.discard(ticket)
                    budget.ledger.returned(ticket)
            budget.notify()
        else:
            budget.bucket.on_rate_limited(message.retry_after)

    async def _grant_loop(self, peer: _Peer, api: str) -> None:
        budget = self._apis[api]
        while True:
            await peer.next_wanted(api)
            ticket = await budget.grant()
            peer.out[api].add(ticket)
            peer.demand[api] -= 1
            peer.outbox.put(Grant(api, ticket))


@attrs.define(eq=False)
class _Waiter:
    granted: anyio.Event = attrs.field(factory=anyio.Event)
    ticket: int | None = None


class _RemoteLimiter:
    """One API's limiter in a worker: each acquire is one grant from the parent's budget."""

    def __init__(self, link: BudgetLink, api: str) -> None:
        self._link = link
        self.api = api
        self.waiters: deque[_Waiter] = deque()

    async def acquire(self, cost: float = 1.0) -> None:
        for _ in range(max(1, math.ceil(cost))):
            await self._one()

    async def _one(self) -> None:
        link = self._link
        link.check()
        waiter = _Waiter()
        self.waiters.append(waiter)
        link.want(self.api)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.ticket is None:
                self.waiters.remove(waiter)
            else:
                link.give_back(self.api, waiter.ticket)
            raise
        if waiter.ticket is None:
            raise link.unavailable()  # woken because the link is gone
        link.spent(self.api, waiter.ticket)

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        self._link.rate_limited(self.api, retry_after)

    def __repr__(self) -> str:
        return f"LocalBudget limiter({self.api!r}, waiting={len(self.waiters)})"


class BudgetLink:
    """A worker's connection to its parent's budget: ``async with BudgetLink.connect(address) as link``."""

    def __init__(self, address: str, stream: anyio.abc.ByteStream, clock: Clock) -> None:
        self.address = address
        self._stream = stream
        self._clock = clock
        self._outbox = _Outbox(stream)
        self._limiters: dict[str, _RemoteLimiter] = {}
        self._wants: dict[str, int] = {}
        self._spent: dict[str, list[tuple[int, float]]] = {}
        self.lost = anyio.Event()
        self._flush = anyio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, address: str, key: str, *, clock: Clock | None = None
    ) -> AsyncIterator[BudgetLink]:
        host, _, port = address.rpartition(":")
        try:
            stream = await anyio.connect_tcp(host, int(port))
        except (OSError, ValueError) as exc:
            raise RateLimiterUnavailableError(f"local budget {address}", str(exc)) from exc
        link = cls(address, stream, clock or SystemClock())
        link._outbox.put(Hello(key))
        async with stream, _background(link._write, link._read):
            yield link

    def limiter(self, api: str) -> RateLimiter:
        return self._limiters.setdefault(api, _RemoteLimiter(self, api))

    def check(self) -> None:
        if self.lost.is_set():
            raise self.unavailable()

    def unavailable(self) -> RateLimiterUnavailableError:
        return RateLimiterUnavailableError(
            f"local budget {self.address}", "the process serving it is gone (was the parent stopped?)"
        )

    # What the limiters report; sent by the writer task, batched.

    def want(self, api: str) -> None:
        self._wants[api] = self._wants.get(api, 0) + 1
        self._flush.set()

    def spent(self, api: str, ticket: int) -> None:
        self._spent.setdefault(api, []).append((ticket, self._clock.now()))
        self._flush.set()

    def give_back(self, api: str, ticket: int) -> None:
        self._outbox.put(Back(api, [ticket]))

    def rate_limited(self, api: str, retry_after: float | None) -> None:
        self._outbox.put(Limited(api, retry_after))

    async def _write(self) -> None:
        async with _background(self._outbox.run):
            while True:
                await self._flush.wait()
                self._flush = anyio.Event()
                # Spends first: they make room in the window before new demand asks for it.
                for api, tickets in self._spent.items():
                    if tickets:
                        self._outbox.put(Spent(api, tickets))
                for api, n in self._wants.items():
                    if n:
                        self._outbox.put(Want(api, n))
                self._spent, self._wants = {}, {}

    async def _read(self) -> None:
        try:
            async for line in _lines(self._stream):
                try:
                    grant = _from_parent.decode(line)
                except msgspec.DecodeError:
                    break
                self._deliver(grant)
        finally:
            self.lost.set()
            for limiter in self._limiters.values():
                while limiter.waiters:
                    limiter.waiters.popleft().granted.set()  # without a ticket: they raise

    def _deliver(self, grant: Grant) -> None:
        limiter = self._limiters.get(grant.api)
        if limiter is None or not limiter.waiters:
            self.give_back(grant.api, grant.ticket)  # its waiter was cancelled meanwhile
            return
        waiter = limiter.waiters.popleft()
        waiter.ticket = grant.ticket
        waiter.granted.set()


@attrs.frozen
class LocalBudget:
    """The budget a ``BudgetServer`` serves at ``address`` (picklable; a worker opens it).

    ``key`` only admits this run's workers to the budget; it grants nothing at Amperity."""

    address: str
    key: str = attrs.field(repr=False)
    rates: Rates = Rates()

    @contextlib.asynccontextmanager
    async def limiters(self, tenant: str) -> AsyncIterator[dict[str, Limiter]]:
        unlimited: dict[str, Limiter] = {api: UNLIMITED for api in APIS}
        if all(self.rates.limit(api) is UNLIMITED for api in APIS):
            yield unlimited
            return
        async with BudgetLink.connect(self.address, self.key) as link:
            yield {
                api: UNLIMITED if self.rates.limit(api) is UNLIMITED else link.limiter(api) for api in APIS
            }
