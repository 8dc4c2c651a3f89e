"""A worker's side of its parent's local budget (``budget_server``): ``LocalBudget`` opens a
``BudgetLink``, whose limiters the worker's client acquires from.

Each API's limiter keeps the tickets of its leases in a pool and hands them to its callers
without a round trip; a caller waits for the parent only when the pool is empty, and once a
pool runs down to a quarter of a lease the next lease is asked for before anyone waits. What
the parent must hear travels in batches, each no later than it matters:

- spends (with the time of each) once a lease's worth is pending, with every request for more
  tickets, and at most ``SETTLE_SECONDS`` after a spend: until then the parent counts them in
  every window, so a late report only holds back grants, never lets too many through;
- a pool that no caller drew on for ``SETTLE_SECONDS`` goes back to the parent, and so do the
  pool and the pending spends when the link closes, so an idle or finished worker holds none
  of the window.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import attrs
import msgspec

from ..clock import Clock, SystemClock
from ..errors import RateLimiterUnavailableError
from ..ratelimit import UNLIMITED, RateLimiter
from .budget_wire import (
    Back,
    Grant,
    Hello,
    Limited,
    Outbox,
    Spent,
    Want,
    background,
    decode_from_parent,
    lease_size,
    lines,
)
from .budgets import APIS, Rates
from .connection import Limiter

SETTLE_SECONDS = 0.1
"""The longest a spend goes unreported, or an unused pool is kept, by a worker."""
_GOODBYE_SECONDS = 1.0


@attrs.define(eq=False)
class _Waiter:
    granted: anyio.Event = attrs.field(factory=anyio.Event)
    ticket: int | None = None


class _RemoteLimiter:
    """One API's limiter in a worker: tickets from the pool of its leases, or from the parent."""

    def __init__(self, link: BudgetLink, api: str, lease: int, clock: Clock) -> None:
        self._link = link
        self._clock = clock
        self.api = api
        self.lease = lease
        self.waiters: deque[_Waiter] = deque()
        self.pool: deque[int] = deque()
        self.unreported: list[tuple[int, float]] = []
        self.asked = 0
        """Tickets asked for and not granted yet, as the parent counts them."""
        self.last_spent = -math.inf

    async def acquire(self, cost: float = 1.0) -> None:
        for _ in range(max(1, math.ceil(cost))):
            await self._one()

    async def _one(self) -> None:
        self._link.check()
        if self.pool and not self.waiters:
            self._spend(self.pool.popleft())
            return
        waiter = _Waiter()
        self.waiters.append(waiter)
        self._ask()
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.ticket is None:
                self.waiters.remove(waiter)
            else:
                self._keep(waiter.ticket)  # granted meanwhile: the next caller spends it
            raise
        if waiter.ticket is None:
            raise self._link.unavailable()  # woken because the link is gone
        self._spend(waiter.ticket)

    def _spend(self, ticket: int) -> None:
        now = self._clock.now()
        self.last_spent = now
        self.unreported.append((ticket, now))
        if len(self.unreported) >= self.lease:
            self._link.report(self)
        else:
            self._link.settle_by(now + SETTLE_SECONDS)
        if self.lease > 1 and len(self.pool) <= self.lease // 4:
            self._ask(ahead=1)

    def _ask(self, ahead: int = 0) -> None:
        missing = len(self.waiters) + ahead - self.asked
        if missing > 0:
            self.asked += missing
            self._link.want(self, missing)

    def receive(self, tickets: list[int]) -> None:
        """A lease arrived: to the callers waiting, in order, then into the pool."""
        self.asked = max(0, self.asked - len(tickets))
        for ticket in tickets:
            self._keep(ticket)

    def _keep(self, ticket: int) -> None:
        """A ticket to spend: the first waiting caller's, else the pool's."""
        if self.waiters:
            waiter = self.waiters.popleft()
            waiter.ticket = ticket
            waiter.granted.set()
        elif len(self.pool) < 2 * self.lease:  # a lease asked for ahead may meet one still in use
            self.pool.append(ticket)
            self._link.settle_by(self._clock.now() + SETTLE_SECONDS)
        else:
            self._link.give_back(self.api, [ticket])

    def settle(self, now: float) -> None:
        """Report every spend; hand the pool back if no caller drew on it for ``SETTLE_SECONDS``."""
        if self.unreported:
            self._link.report(self)
        if self.pool:
            if now - self.last_spent >= SETTLE_SECONDS:
                self._link.give_back(self.api, list(self.pool))
                self.pool.clear()
            else:
                self._link.settle_by(self.last_spent + SETTLE_SECONDS)

    def fail_waiters(self) -> None:
        while self.waiters:
            self.waiters.popleft().granted.set()  # without a ticket: they raise

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        self._link.rate_limited(self.api, retry_after)

    def __repr__(self) -> str:
        return f"LocalBudget limiter({self.api!r}, waiting={len(self.waiters)}, pooled={len(self.pool)})"


class BudgetLink:
    """A worker's connection to its parent's budget:
    ``async with BudgetLink.connect(address, key, rates=...) as link``."""

    def __init__(self, address: str, stream: anyio.abc.ByteStream, rates: Rates, clock: Clock) -> None:
        self.address = address
        self._stream = stream
        self._rates = rates
        self._clock = clock
        self._outbox = Outbox(stream)
        self._limiters: dict[str, _RemoteLimiter] = {}
        self._wants: dict[str, int] = {}
        self._spent: dict[str, list[tuple[int, float]]] = {}
        self.lost = anyio.Event()
        self._flush = anyio.Event()
        self._settle_at = math.inf
        self._settle_soon = anyio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, address: str, key: str, *, rates: Rates | None = None, clock: Clock | None = None
    ) -> AsyncIterator[BudgetLink]:
        """``rates``: the server's (they size the leases); ``clock``: monotonic, shared with the server."""
        host, _, port = address.rpartition(":")
        try:
            stream = await anyio.connect_tcp(host, int(port))
        except (OSError, ValueError) as exc:
            raise RateLimiterUnavailableError(f"local budget {address}", str(exc)) from exc
        link = cls(address, stream, rates or Rates(), clock or SystemClock())
        link._outbox.put(Hello(key))
        async with stream:
            try:
                async with background(link._write, link._read, link._settle):
                    yield link
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_GOODBYE_SECONDS):
                    await link._goodbye()

    def limiter(self, api: str) -> RateLimiter:
        limiter = self._limiters.get(api)
        if limiter is None:
            lease = lease_size(self._rates.limit(api))
            limiter = self._limiters[api] = _RemoteLimiter(self, api, lease, self._clock)
        return limiter

    def check(self) -> None:
        if self.lost.is_set():
            raise self.unavailable()

    def unavailable(self) -> RateLimiterUnavailableError:
        return RateLimiterUnavailableError(
            f"local budget {self.address}", "the process serving it is gone (was the parent stopped?)"
        )

    # What the limiters tell the parent; sent by the writer task, batched.

    def want(self, limiter: _RemoteLimiter, n: int) -> None:
        self._wants[limiter.api] = self._wants.get(limiter.api, 0) + n
        self.report(limiter)  # spends first: they make room in the window before new demand asks for it

    def report(self, limiter: _RemoteLimiter) -> None:
        if limiter.unreported:
            self._spent.setdefault(limiter.api, []).extend(limiter.unreported)
            limiter.unreported = []
        self._flush.set()

    def give_back(self, api: str, tickets: list[int]) -> None:
        self._outbox.put(Back(api, tickets))

    def rate_limited(self, api: str, retry_after: float | None) -> None:
        self._outbox.put(Limited(api, retry_after))

    def settle_by(self, deadline: float) -> None:
        if deadline < self._settle_at:
            self._settle_at = deadline
            self._settle_soon.set()

    def _messages(self) -> list[Spent | Want]:
        messages: list[Spent | Want] = [
            Spent(api, tickets) for api, tickets in self._spent.items() if tickets
        ]
        messages += [Want(api, n) for api, n in self._wants.items() if n]
        self._spent, self._wants = {}, {}
        return messages

    async def _write(self) -> None:
        async with background(self._outbox.run):
            while True:
                await self._flush.wait()
                self._flush = anyio.Event()
                for message in self._messages():
                    self._outbox.put(message)

    async def _settle(self) -> None:
        while True:
            if self._settle_at == math.inf:
                await self._settle_soon.wait()
                self._settle_soon = anyio.Event()
                continue
            await self._clock.sleep_until(self._settle_at)
            self._settle_at = math.inf
            now = self._clock.now()
            for limiter in self._limiters.values():
                limiter.settle(now)

    async def _read(self) -> None:
        async for line in lines(self._stream):
            try:
                grant = decode_from_parent(line)
            except msgspec.DecodeError:
                break
            self._deliver(grant)
        # The parent hung up (a link closing cancels this task instead).
        self.lost.set()
        for limiter in self._limiters.values():
            limiter.fail_waiters()

    def _deliver(self, grant: Grant) -> None:
        limiter = self._limiters.get(grant.api)
        if limiter is None:
            self.give_back(grant.api, grant.tickets)
            return
        limiter.receive(grant.tickets)

    async def _goodbye(self) -> None:
        """What the parent has not heard yet, and every ticket of the pools back: the link's last words."""
        if self.lost.is_set():
            return
        for limiter in self._limiters.values():
            self.report(limiter)
            if limiter.pool:
                self.give_back(limiter.api, list(limiter.pool))
                limiter.pool.clear()
        for message in self._messages():
            self._outbox.put(message)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._stream.send(self._outbox.take())


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
        async with BudgetLink.connect(self.address, self.key, rates=self.rates) as link:
            yield {
                api: UNLIMITED if self.rates.limit(api) is UNLIMITED else link.limiter(api) for api in APIS
            }
