"""Client-side rate limits: a FIFO-fair token bucket that learns from 429s.

Amperity documents a rate (10 requests/s for the control-plane API, 2000/s for the Profile API) but
sends no rate-limit headers, so the bucket starts at the documented rate, slows down
multiplicatively when the server answers 429 and climbs back linearly once the 429s stop.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final, Protocol, runtime_checkable

import anyio

from .clock import Clock, SystemClock
from .errors import ConfigurationError
from .operations import CONTROL_PLANE, OperationInfo

# Float slack when comparing accrued tokens with a cost: a waiter woken exactly at its due time
# must not be sent back to sleep for a rounding error.
_EPSILON = 1e-9
# The default capacity, in seconds of tokens at the configured rate.
_DEFAULT_BURST_SECONDS = 0.02


@runtime_checkable
class RateLimiter(Protocol):
    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` units of budget are available, then take them."""
        ...

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """The server answered 429 (``retry_after``: seconds it asked to wait, if it said)."""
        ...


class Unlimited(enum.Enum):
    """The type of ``UNLIMITED``."""

    UNLIMITED = "unlimited"

    def __repr__(self) -> str:
        return "UNLIMITED"


UNLIMITED: Final = Unlimited.UNLIMITED
"""``rate_limit=UNLIMITED``: no client-side limit at all, for tenants whose limits Amperity raised.

Distinct from ``None``, which means the default bucket at the documented limit. A 429 is still
retried after the server's ``Retry-After`` or a backoff.
"""


def choose_limiter(
    given: RateLimiter | Unlimited | None, default: Callable[[], RateLimiter], *, setting: str
) -> RateLimiter | None:
    """The limiter a client setting asks for: ``None`` (not given) -> ``default()``, ``UNLIMITED`` -> none."""
    if given is UNLIMITED:
        return None
    if given is None:
        return default()
    if not isinstance(given, RateLimiter):
        raise ConfigurationError(
            f"{setting} must be a rate limiter such as TokenBucket(rate=...), None for the default "
            f"(the documented limit) or UNLIMITED for no client-side limit; got {given!r}"
        )
    return given


class _Waiter:
    __slots__ = ("cost", "turn")

    def __init__(self, cost: float) -> None:
        self.cost = cost
        # Made only for waiters that queue behind another: the head never waits for its turn.
        self.turn: anyio.Event | None = None


class TokenBucket:
    """A token bucket shared by any number of tasks (and clients) on one event loop.

    - ``rate``: tokens per second; ``capacity``: the most tokens the bucket holds. Any interval of
      ``T`` seconds then holds at most ``capacity + rate * T`` grants, however late the event loop
      wakes the waiters, so a strict server window is exceeded by at most ``capacity`` requests
      (fewer when the client stays below the limit). The default capacity is ``rate / 50`` (20 ms
      worth of tokens), at least 1: at 10/s that is 1 token, which spaces grants at least 0.1 s
      apart and never puts more than 10 into any one-second window; at 2000/s it is 40 tokens,
      enough to absorb the event loop's timer granularity (about 1 ms) without losing rate.
    - FIFO: requests are granted in the order ``acquire`` was called. Only the first waiter sleeps,
      on the clock, until exactly the moment its tokens are due; the others wait for their turn.
      A cancelled waiter takes no tokens and leaves the queue at once.
    - Adaptive (``adaptive=True``): ``on_rate_limited`` multiplies the effective rate by
      ``decrease_factor`` (never below ``min_rate``, default ``rate / 10``); 429s within
      ``decrease_interval`` seconds of a decrease count as the same event (they were sent before
      the decrease took effect). The rate then climbs back linearly to ``rate`` over
      ``recovery_seconds``. A ``retry_after`` pauses all grants until that many seconds from now.
    - Window guard (``window=(count, seconds)``): besides the bucket, no ``seconds``-long interval
      holds more than ``count`` grants, counted on actual grant times. With a capacity above 1 the
      bucket then makes up for late wake-ups (no rate lost to timer granularity) while the guard
      keeps a strict server window from ever seeing more than ``count`` requests.
    - One event loop: share a bucket between tasks and clients of one loop, not across threads.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Clock | None = None,
        adaptive: bool = True,
        decrease_factor: float = 0.5,
        min_rate: float | None = None,
        recovery_seconds: float = 10.0,
        decrease_interval: float = 1.0,
        window: tuple[int, float] | None = None,
    ) -> None:
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        capacity = max(1.0, rate * _DEFAULT_BURST_SECONDS) if capacity is None else capacity
        if not (math.isfinite(capacity) and capacity >= 1):
            raise ValueError(f"capacity must be at least 1 token, got {capacity!r}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be between 0 and 1 (exclusive), got {decrease_factor!r}")
        min_rate = rate / 10 if min_rate is None else min_rate
        if not 0 < min_rate <= rate:
            raise ValueError(f"min_rate must be positive and at most rate={rate!r}, got {min_rate!r}")
        if not recovery_seconds > 0:
            raise ValueError(f"recovery_seconds must be positive, got {recovery_seconds!r}")
        if decrease_interval < 0:
            raise ValueError(f"decrease_interval must not be negative, got {decrease_interval!r}")
        if window is not None and not (window[0] >= 1 and window[1] > 0):
            raise ValueError(f"window must be (count >= 1, seconds > 0), got {window!r}")
        self.window = window
        # Grant times (one per unit of cost) within the guarded window, oldest first.
        self._granted: deque[float] = deque()
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.adaptive = adaptive
        self.decrease_factor = decrease_factor
        self.min_rate = float(min_rate)
        self.recovery_seconds = recovery_seconds
        self.decrease_interval = decrease_interval
        self._clock = clock or SystemClock()
        self._tokens = self.capacity
        # Time up to which _tokens is accounted; in the future while a Retry-After pause lasts.
        self._updated = self._clock.now()
        # After a decrease the rate ramps linearly from _floor_rate at _decreased_at to self.rate.
        self._floor_rate = self.rate
        self._decreased_at = -math.inf
        self._waiters: deque[_Waiter] = deque()

    # the rate over time

    @property
    def current_rate(self) -> float:
        """The effective rate now (tokens/s), after what 429s have taught the bucket."""
        return self._rate_at(self._clock.now())

    def _rate_at(self, t: float) -> float:
        elapsed = t - self._decreased_at
        if elapsed >= self.recovery_seconds:
            return self.rate
        if elapsed <= 0:
            return self._floor_rate
        return self._floor_rate + (self.rate - self._floor_rate) * (elapsed / self.recovery_seconds)

    def _accrued(self, start: float, end: float) -> float:
        """Tokens that flow in between ``start`` and ``end`` (the integral of the rate)."""
        recovered_at = self._decreased_at + self.recovery_seconds
        if start >= recovered_at:
            return self.rate * (end - start)
        ramp_start = max(start, self._decreased_at)
        ramp_end = min(end, recovered_at)
        tokens = self._floor_rate * max(0.0, min(end, ramp_start) - start)
        if ramp_end > ramp_start:
            tokens += (self._rate_at(ramp_start) + self._rate_at(ramp_end)) / 2 * (ramp_end - ramp_start)
        return tokens + self.rate * max(0.0, end - max(recovered_at, start))

    def _time_to_accrue(self, deficit: float, start: float) -> float:
        """Seconds from ``start`` until ``deficit`` more tokens have flowed in."""
        recovered_at = self._decreased_at + self.recovery_seconds
        if start >= recovered_at:
            return deficit / self.rate
        ramp_start = max(start, self._decreased_at)
        flat = ramp_start - start
        if self._floor_rate * flat >= deficit:
            return deficit / self._floor_rate
        deficit -= self._floor_rate * flat
        ramp_tokens = self._accrued(ramp_start, recovered_at)
        if ramp_tokens < deficit:
            return (recovered_at - start) + (deficit - ramp_tokens) / self.rate
        # Solve r0*d + slope*d**2/2 = deficit for d on the linear ramp.
        r0 = self._rate_at(ramp_start)
        slope = (self.rate - self._floor_rate) / self.recovery_seconds
        d = 2 * deficit / (r0 + math.sqrt(r0 * r0 + 2 * slope * deficit))
        return flat + d

    def _refill(self, t: float) -> None:
        if t > self._updated:
            self._tokens = min(self.capacity, self._tokens + self._accrued(self._updated, t))
            self._updated = t

    # granting

    async def acquire(self, cost: float = 1.0) -> None:
        if not 0 < cost <= self.capacity:
            raise ValueError(
                f"cost must be positive and at most the bucket's capacity {self.capacity}, got {cost!r}"
            )
        if self.window is not None and math.ceil(cost) > self.window[0]:
            raise ValueError(f"cost {cost!r} exceeds the window's count {self.window[0]}")
        if not self._waiters:
            now = self._clock.now()
            self._refill(now)
            if (
                self._updated <= now
                and self._tokens >= cost - _EPSILON
                and self._window_due(cost, now) <= now
            ):
                self._take(cost, now)
                return
        waiter = _Waiter(cost)
        self._waiters.append(waiter)
        try:
            if self._waiters[0] is not waiter:
                waiter.turn = anyio.Event()
                await waiter.turn.wait()
            await self._wait_for_tokens(cost)
        except BaseException:
            self._leave(waiter)
            raise
        self._waiters.popleft()
        self._wake_head()

    async def _wait_for_tokens(self, cost: float) -> None:
        while True:
            now = self._clock.now()
            self._refill(now)
            start = max(self._updated, now)
            deficit = cost - self._tokens
            window_due = self._window_due(cost, now)
            if deficit <= _EPSILON and start <= now and window_due <= now:
                self._take(cost, now)
                return
            due = start + (self._time_to_accrue(deficit, start) if deficit > 0 else 0.0)
            await self._clock.sleep_until(max(due, window_due))

    def _window_due(self, cost: float, now: float) -> float:
        """When the window guard lets ``cost`` more units through (``now`` or earlier: at once)."""
        if self.window is None:
            return now
        count, seconds = self.window
        granted = self._granted
        while granted and granted[0] <= now - seconds + _EPSILON:
            granted.popleft()
        over = len(granted) + math.ceil(cost) - int(count)
        if over <= 0:
            return now
        return granted[over - 1] + seconds

    def _take(self, cost: float, now: float) -> None:
        self._tokens -= cost
        if self.window is not None:
            self._granted.extend([now] * math.ceil(cost))

    def _leave(self, waiter: _Waiter) -> None:
        was_head = self._waiters[0] is waiter
        self._waiters.remove(waiter)
        if was_head:
            self._wake_head()

    def _wake_head(self) -> None:
        if self._waiters:
            turn = self._waiters[0].turn
            if turn is not None:
                turn.set()

    # learning from the server

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        now = self._clock.now()
        self._refill(now)
        resume = now + retry_after if retry_after is not None and retry_after > 0 else now
        if self.adaptive and now - self._decreased_at >= self.decrease_interval:
            self._floor_rate = max(self.min_rate, self._rate_at(now) * self.decrease_factor)
            # The climb back starts when the server lets requests through again.
            self._decreased_at = resume
        if resume > self._updated:
            # No tokens accrue during the pause, and no burst of saved tokens follows it.
            self._tokens = min(self._tokens, 1.0)
            self._updated = resume

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self.rate!r}, capacity={self.capacity!r}, "
            f"current_rate={self.current_rate:.3f}, "
            f"waiting={len(self._waiters)})"
        )


class PerApiLimits:
    """``limiter_for`` that gives each API its own limiter (one budget per API, the default).

    Requests the registry does not know go to ``default_api``'s limiter.
    """

    def __init__(
        self, limiters: Mapping[str, RateLimiter | None], *, default_api: str = CONTROL_PLANE
    ) -> None:
        if default_api not in limiters:
            raise ValueError(
                f"no limiter for the default API {default_api!r}; got limiters for {sorted(limiters)}"
            )
        self._limiters = dict(limiters)
        self._default = limiters[default_api]

    def __call__(self, operation: OperationInfo | None) -> RateLimiter | None:
        if operation is None:
            return self._default
        return self._limiters.get(operation.api, self._default)


class PerOperationLimits:
    """``limiter_for`` that gives each (API, operation) its own limiter, made on first use.

    For when a rate is enforced per endpoint rather than per API. ``make_limiter(api)`` creates the
    limiter for one operation of ``api`` (``None``: that API is not limited). Requests the registry
    does not know share one limiter of ``default_api``.
    """

    def __init__(
        self, make_limiter: Callable[[str], RateLimiter | None], *, default_api: str = CONTROL_PLANE
    ) -> None:
        self._make_limiter = make_limiter
        self._default_api = default_api
        self._limiters: dict[tuple[str, str | None], RateLimiter | None] = {}

    def __call__(self, operation: OperationInfo | None) -> RateLimiter | None:
        key = (operation.api, operation.operation_id) if operation is not None else (self._default_api, None)
        try:
            return self._limiters[key]
        except KeyError:
            limiter = self._limiters[key] = self._make_limiter(key[0])
            return limiter
