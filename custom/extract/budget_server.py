"""One rate budget for worker processes on one machine, served by their parent over loopback TCP.

The parent owns a ``TokenBucket`` per API (the rate, its FIFO order across workers, slowing down
after a 429) and a ``WindowLedger`` per API (no ``seconds``-long window holds more than the
limit, counted on the times workers report spending their grants). A worker that has callers
waiting asks for tickets; the parent answers with a lease of ``lease_size(rate)`` tickets (one
at low rates, about 1% of a second's budget at high ones) once the bucket and the window allow.
Every ticket of a lease counts in every window until the worker reports when it spent it or
hands it back (``budget_link``), so leases cost no fidelity, only round trips: at 2000/s a
worker makes one round trip per 20 requests instead of two per request.

A worker that dies has its tickets counted as spent when its socket closes. A parent that dies
closes every socket: a worker waiting for a ticket then fails with ``RateLimiterUnavailableError``.
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

import anyio
import anyio.abc
import attrs
import msgspec

from ..clock import Clock, SystemClock
from ..ratelimit import UNLIMITED, TokenBucket
from .budget_link import LocalBudget
from .budget_wire import (
    Back,
    Grant,
    Limited,
    Outbox,
    Spent,
    Want,
    background,
    decode_from_worker,
    decode_hello,
    lease_size,
    lines,
)
from .budgets import APIS, Rates
from .ledger import WindowLedger

__all__ = ["WINDOW_SECONDS", "BudgetServer", "BudgetStats", "LocalBudget"]

WINDOW_SECONDS = 1.02
"""The window guard's length: one second plus room for the jitter between a spend and its
request's arrival (as ``RedisTokenBucket``'s)."""


@attrs.define
class BudgetStats:
    """What one API's budget granted: ``leases`` (one round trip each) holding ``tickets``."""

    leases: int = 0
    tickets: int = 0


@attrs.define(eq=False)
class _ApiBudget:
    bucket: TokenBucket
    ledger: WindowLedger
    clock: Clock
    lease: int
    changed: anyio.Event = attrs.field(factory=anyio.Event)
    stats: BudgetStats = attrs.field(factory=BudgetStats)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def grant(self) -> list[int]:
        """A lease of ``lease`` tickets, once the bucket (in FIFO order) and the window allow them
        all: a window with room for only some waits, so that leases stay whole (one round trip
        each) at the limit too."""
        await self.bucket.acquire(self.lease)
        while True:
            now = self.clock.now()
            due = self.ledger.due(now, self.lease)
            if due is not None and due <= now:  # no await since the check: nobody took the room
                tickets = [self.ledger.grant(now) for _ in range(self.lease)]
                self.stats.leases += 1
                self.stats.tickets += len(tickets)
                return tickets
            if due is None:
                await self.changed.wait()  # only a report can make room
            else:
                await self.clock.sleep_until(due)


@attrs.define(eq=False)
class _Peer:
    outbox: Outbox
    demand: dict[str, int] = attrs.field(factory=dict)
    wanted: dict[str, anyio.Event] = attrs.field(factory=dict)
    out: dict[str, set[int]] = attrs.field(factory=dict)

    def want(self, api: str, n: int) -> None:
        self.demand[api] = self.demand.get(api, 0) + max(0, n)
        self.wanted.setdefault(api, anyio.Event()).set()

    def granted(self, api: str, tickets: list[int]) -> None:
        self.out[api].update(tickets)
        self.demand[api] = max(0, self.demand[api] - len(tickets))  # a lease may exceed the demand

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
                lease_size(limit),
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

    def stats(self, api: str) -> BudgetStats | None:
        budget = self._apis.get(api)
        return budget.stats if budget is not None else None

    async def __aenter__(self) -> BudgetServer:
        listener = await self._stack.enter_async_context(
            await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        )
        self._port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        await self._stack.enter_async_context(background(functools.partial(listener.serve, self._serve)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        peer = _Peer(Outbox(stream), out={api: set() for api in self._apis})
        loops = [functools.partial(self._grant_loop, peer, api) for api in self._apis]
        try:
            async with stream, background(peer.outbox.run, *loops):
                received = lines(stream)
                first = await anext(received, b"")
                try:
                    hello = decode_hello(first)
                except msgspec.DecodeError:
                    return  # not one of our workers: hang up
                if not hmac.compare_digest(hello.key.encode(), self._key.encode()):
                    return
                async for line in received:
                    try:
                        self._handle(peer, decode_from_worker(line))
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
            tickets = await budget.grant()
            peer.granted(api, tickets)
            peer.outbox.put(Grant(api, tickets))
