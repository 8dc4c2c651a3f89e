"""One rate budget shared by every process and machine that names the same tenant and API, held in Redis.

Install with the extra ``amperity-async[redis]``. Runs on asyncio (redis-py's asyncio client).

How the budget stays exact
--------------------------
The bucket lives in one Redis hash and is refilled and taken from in one Lua script that reads the
Redis server's clock (``TIME``), so the workers' clocks never matter. Every grant is a *lease*: a
batch of tokens a process may spend locally. At low rates a lease holds exactly the tokens asked
for; at high rates it holds up to ``lease_size`` more, so most acquires cost no round trip.

The script keeps ``level = tokens in the bucket + tokens held in leases whose wait is over`` and
refills the bucket only while ``level <= capacity`` (a lease granted on credit is debt, not level,
until refill has covered it). A token leaves the level when it is spent; unused tokens
go back into the bucket when the lease is settled (on the next round trip, on ``aclose``, or once
the lease is stale). A lease the script has not heard back from by its expiry is counted as spent,
never refunded, so a crashed process cannot hand out tokens twice. A process stops spending a
lease before the server's expiry, measured from the moment it *sent* the request (which precedes
the grant). Hence, whatever the number of processes and however leases are held:

    requests started in any interval of t seconds  <=  capacity + rate * t

(``rate`` being the configured rate; after a 429 the effective rate is lower). Leasing does not add
to that bound; its cost is that tokens held by an idle process are unavailable to the others until
returned or expired, at most ``lease_size`` per process for at most ``lease_validity`` seconds.

When the bucket is short the script grants on credit and returns how long to wait (the bucket goes
negative); the caller sleeps exactly that long. Within one process a FIFO lock admits one
requester at a time, so each process has at most one reservation outstanding, waits stay short,
and a lowered rate after a 429 applies to every process's next reservation.

429s
----
``on_rate_limited`` marks a penalty that the next round trip applies inside the script: the shared
rate is multiplied by ``decrease_factor`` (at most once per ``decrease_cooldown`` across all
workers, so one burst of 429s counts once) and recovers linearly to the full rate over
``recovery_seconds`` of server time. A ``Retry-After`` pauses the whole shared budget that long.

Redis unavailable
-----------------
Every Redis call is bounded by ``timeout``. ``on_unavailable="raise"`` raises
``RateLimiterUnavailableError`` naming the URL (without its password); ``"local"`` warns once and
limits this process with an in-process ``TokenBucket`` at ``rate / expected_workers``, trying Redis
again at most every ``probe_interval`` seconds and returning to it once it answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
import warnings
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import attrs

from .clock import Clock, SystemClock
from .errors import ConfigurationError, RateLimiterFallbackWarning, RateLimiterUnavailableError

try:
    import redis.asyncio as redis_asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "RedisTokenBucket needs the redis client: install the extra with pip install 'amperity-async[redis]'"
    ) from exc

if TYPE_CHECKING:
    from .ratelimit import TokenBucket

__all__ = ["RedisBucketStats", "RedisTokenBucket", "redact_url"]

logger = logging.getLogger("amperity_async.redis_bucket")

KEY_PREFIX = "amperity-async"
_MAX_LEASE = 50
_LEASE_RATE_DIVISOR = 100
# Spend a lease only until this fraction of its validity has passed (measured from the request's
# send time), so that a clock running slightly fast here never spends past the server's expiry.
_LEASE_SAFETY = 0.9
_EPSILON = 1e-9

# KEYS[1]: the bucket hash; KEYS[2]: live leases, member "<seq>:<tokens>", score = expiry (server time).
# Numbers travel as strings: Redis truncates Lua numbers returned from a script to integers.
_SCRIPT = """
local bucket, leases = KEYS[1], KEYS[2]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local validity = tonumber(ARGV[5])
local settle = ARGV[6]
local returned = tonumber(ARGV[7])
local penalize = ARGV[8] == '1'
local retry_after = tonumber(ARGV[9])
local decrease = tonumber(ARGV[10])
local min_factor = tonumber(ARGV[11])
local recovery = tonumber(ARGV[12])
local cooldown = tonumber(ARGV[13])
local ttl_ms = tonumber(ARGV[14])

local function num(x) return string.format('%.17g', x) end
local function lease_tokens(member) return tonumber(string.match(member, ':(.+)$')) end

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local f = redis.call('HMGET', bucket, 'tokens', 'ts', 'factor', 'factor_ts')
local tokens = tonumber(f[1]) or capacity
local ts = tonumber(f[2]) or now
local factor0 = tonumber(f[3]) or 1
local factor_ts = tonumber(f[4]) or 0

-- A lease not settled by its expiry counts as spent: its holder stopped using it before then.
redis.call('ZREMRANGEBYSCORE', leases, '-inf', num(now))
if settle ~= '' and redis.call('ZREM', leases, settle) == 1 then
  tokens = tokens + math.min(math.max(returned, 0), lease_tokens(settle))
end
-- Tokens in leases whose wait is over (expiry - validity <= now) may be spent at any moment, so
-- they count against the capacity. Leases still waiting out a reservation do not: their tokens
-- are the bucket's debt, not yet covered by refill.
local held = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', num(now + validity))) do
  held = held + lease_tokens(member)
end

local function factor_at(x)
  if recovery <= 0 then return 1 end
  return math.min(1, factor0 + math.max(0, x - factor_ts) / recovery)
end
-- Refill at the average of the recovering factor over the gap: min(1, linear) is concave, so the
-- trapezoid never over-refills.
local elapsed = math.max(0, now - ts)
local factor = factor_at(now)
tokens = math.min(capacity - held, tokens + elapsed * rate * (factor_at(ts) + factor) / 2)

if penalize then
  if now - factor_ts >= cooldown then
    factor = math.max(min_factor, factor * decrease)
    factor0, factor_ts = factor, now
  end
  if retry_after > 0 then tokens = math.min(tokens, -retry_after * rate * factor) end
end

local granted, wait, member = 0, 0, ''
if want > 0 then
  if tokens >= want then
    granted = want
  elseif tokens >= need then
    granted = need + math.floor(tokens - need)
  else
    granted = want
    wait = (want - tokens) / (rate * factor)
  end
  tokens = tokens - granted
  member = redis.call('HINCRBY', bucket, 'seq', 1) .. ':' .. num(granted)
  redis.call('ZADD', leases, num(now + wait + validity), member)
end

redis.call('HSET', bucket, 'tokens', num(tokens), 'ts', num(now), 'factor', num(factor0),
  'factor_ts', num(factor_ts))
redis.call('PEXPIRE', bucket, ttl_ms)
redis.call('PEXPIRE', leases, ttl_ms)
return {num(granted), num(wait), member, num(rate * factor)}
"""


def redact_url(url: str) -> str:
    """``url`` with its user info and any password query parameter replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [(key, "***" if "pass" in key.lower() else value) for key, value in pairs], safe="*"
        )
    # Assembled by hand: urlunsplit drops the "//" of "unix:///path" (an empty host).
    shown = (
        f"{parts.scheme}://{netloc}{parts.path}"
        if "//" in url
        else urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    )
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _client_url(client: Any) -> str:
    kwargs: dict[str, Any] = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


@attrs.define
class RedisBucketStats:
    """Counters for one ``RedisTokenBucket`` (this process only)."""

    round_trips: int = 0
    acquired: int = 0
    acquired_locally: int = 0
    tokens_returned: float = 0.0
    unavailable: int = 0

    @property
    def round_trips_per_acquire(self) -> float:
        return self.round_trips / self.acquired if self.acquired else 0.0


@attrs.define
class _Lease:
    member: str
    remaining: float
    ready_at: float
    spend_until: float


class _Unavailable(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _positive(name: str, value: float) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _key_part(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in ":{}") or value != value.strip():
        raise ConfigurationError(
            f"{name} must be a non-empty string without ':', '{{', '}}' or surrounding spaces "
            f"(it names the shared Redis keys), got {value!r}"
        )
    return value


class RedisTokenBucket:
    """A token bucket shared through Redis; same interface as ``TokenBucket``.

    ``url_or_client`` is a ``redis://``/``rediss://``/``unix://`` URL (a client is created with
    ``timeout`` as its socket timeouts and closed by ``aclose``) or a ``redis.asyncio.Redis`` you
    own. Every worker sharing a budget must use the same ``tenant``, ``api``, ``rate`` and
    ``capacity``. Use as an async context manager, or call ``aclose`` to return unused tokens.
    """

    def __init__(
        self,
        url_or_client: str | redis_asyncio.Redis,
        *,
        tenant: str,
        api: str,
        rate: float,
        capacity: float | None = None,
        lease_size: int | None = None,
        on_unavailable: Literal["raise", "local"] = "raise",
        expected_workers: int = 1,
        timeout: float = 0.25,
        clock: Clock | None = None,
        lease_validity: float = 1.0,
        decrease_factor: float = 0.5,
        min_factor: float = 0.05,
        recovery_seconds: float = 30.0,
        decrease_cooldown: float = 1.0,
        probe_interval: float = 5.0,
    ) -> None:
        self.tenant = _key_part("tenant", tenant)
        self.api = _key_part("api", api)
        self.rate = _positive("rate", rate)
        auto_lease = min(_MAX_LEASE, int(self.rate // _LEASE_RATE_DIVISOR))
        # Like TokenBucket, a capacity of 1 at low rates spaces requests exactly 1/rate apart; with
        # leasing the bucket must hold a whole lease, and room for a second keeps partial grants rare.
        self.capacity = _positive("capacity", capacity) if capacity is not None else float(2 * auto_lease + 1)
        if self.capacity < 1:
            raise ConfigurationError(f"capacity must be at least 1 token, got {capacity!r}")
        if on_unavailable not in ("raise", "local"):
            raise ConfigurationError(f"on_unavailable must be 'raise' or 'local', got {on_unavailable!r}")
        if (
            not isinstance(expected_workers, int)
            or isinstance(expected_workers, bool)
            or expected_workers < 1
        ):
            raise ConfigurationError(f"expected_workers must be an integer >= 1, got {expected_workers!r}")
        self.on_unavailable = on_unavailable
        self.expected_workers = expected_workers
        self.timeout = _positive("timeout", timeout)
        self.lease_validity = _positive("lease_validity", lease_validity)
        if self.lease_validity < 2 * self.timeout:
            # A lease must outlive the slowest round trip that can grant it, or it arrives stale.
            raise ConfigurationError(
                f"lease_validity ({lease_validity} s) must be at least twice the timeout ({timeout} s)"
            )
        if not 0 < decrease_factor < 1:
            raise ConfigurationError(f"decrease_factor must be between 0 and 1, got {decrease_factor!r}")
        if not 0 < min_factor <= 1:
            raise ConfigurationError(f"min_factor must be in (0, 1], got {min_factor!r}")
        self.decrease_factor, self.min_factor = float(decrease_factor), float(min_factor)
        self.recovery_seconds = _positive("recovery_seconds", recovery_seconds)
        self.decrease_cooldown = float(decrease_cooldown)
        if not math.isfinite(self.decrease_cooldown) or self.decrease_cooldown < 0:
            raise ConfigurationError(f"decrease_cooldown must be >= 0, got {decrease_cooldown!r}")
        self.probe_interval = _positive("probe_interval", probe_interval)
        if lease_size is None:
            # About 1% of a second's budget per round trip, and a lease plus the request that
            # asks for it must fit in the bucket.
            lease_size = max(0, min(auto_lease, int(self.capacity) - 1))
        if not isinstance(lease_size, int) or isinstance(lease_size, bool) or lease_size < 0:
            raise ConfigurationError(f"lease_size must be an integer >= 0, got {lease_size!r}")
        self.lease_size = lease_size

        if isinstance(url_or_client, str):
            self.url = redact_url(url_or_client)
            try:
                self._redis = redis_asyncio.Redis.from_url(
                    url_or_client,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    # One quick retry lets a connection left over from before a Redis restart be
                    # replaced; the overall timeout below still bounds the call.
                    retry=Retry(NoBackoff(), 1),
                )
            except ValueError as exc:
                raise ConfigurationError(f"invalid Redis URL {self.url}: {exc}") from None
            self._owns_client = True
        else:
            self.url = _client_url(url_or_client)
            self._redis = url_or_client
            self._owns_client = False
        self._script = self._redis.register_script(_SCRIPT)
        prefix = f"{KEY_PREFIX}:{{{self.tenant}:{self.api}}}"
        # The braces are a Redis Cluster hash tag: both keys of one budget land in one slot.
        self.keys = (f"{prefix}:bucket", f"{prefix}:leases")
        self._ttl_ms = math.ceil(
            1000
            * max(60.0, 2 * self.recovery_seconds, 2 * self.capacity / self.rate, 10 * self.lease_validity)
        )

        self._clock: Clock = clock or SystemClock()
        self._lock = anyio.Lock()
        self._lease: _Lease | None = None
        # A lease handed back but not yet confirmed by Redis; sent again until a round trip succeeds.
        self._unsettled: _Lease | None = None
        self._penalty_pending = False
        self._retry_after = 0.0
        self._fallback: TokenBucket | None = None
        self._next_probe = 0.0
        self._closed = False
        self.stats = RedisBucketStats()
        self.current_rate = self.rate

    def __repr__(self) -> str:
        mode = "local fallback" if self._fallback is not None else "shared"
        return (
            f"RedisTokenBucket({self.url!r}, tenant={self.tenant!r}, api={self.api!r}, rate={self.rate}, "
            f"capacity={self.capacity}, lease_size={self.lease_size}, {mode})"
        )

    @property
    def using_fallback(self) -> bool:
        """True while Redis is unreachable and this process limits itself locally."""
        return self._fallback is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` tokens of the shared budget are this caller's."""
        cost = _positive("cost", cost)
        if cost > self.capacity:
            raise ConfigurationError(f"cost {cost} exceeds the bucket capacity {self.capacity}")
        if self._closed:
            raise ConfigurationError(f"{self!r} is closed")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisTokenBucket runs on asyncio only (it uses redis-py's asyncio client)"
            ) from None
        async with self._lock:
            while True:
                if self._closed:
                    raise ConfigurationError(f"{self!r} was closed while waiting")
                if self._fallback is not None and self._clock.now() < self._next_probe:
                    await self._fallback.acquire(cost)
                    self.stats.acquired_locally += 1
                    return
                lease = self._lease
                if lease is not None and lease.remaining >= cost - _EPSILON:
                    now = self._clock.now()
                    if now < lease.spend_until:
                        if now < lease.ready_at:
                            # Cancellation here keeps the lease for the next caller in line.
                            await self._clock.sleep_until(lease.ready_at)
                            continue
                        lease.remaining -= cost
                        self.stats.acquired += 1
                        return
                try:
                    await self._take(cost)
                except _Unavailable as exc:
                    self._unavailable(exc.detail)

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """A 429 was seen: lower the shared rate on the next round trip, and drop the local lease."""
        self._penalty_pending = True
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            self._retry_after = max(self._retry_after, float(retry_after))
        if self._lease is not None:
            self._lease.spend_until = -math.inf
        if self._fallback is not None:
            self._fallback.on_rate_limited(retry_after)

    async def aclose(self) -> None:
        """Return unused leased tokens to the shared budget and close the client this bucket created."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            # A caller still waiting out a reservation holds the lock; its tokens then simply expire.
            with anyio.move_on_after(2 * self.timeout):
                async with self._lock:
                    self._release_lease()
                    if self._unsettled is not None and self._fallback is None:
                        try:
                            await self._round_trip(need=0.0, want=0.0, penalize=False)
                        except _Unavailable as exc:
                            logger.warning("could not return unused tokens to %s: %s", self.url, exc.detail)
            if self._owns_client:
                with anyio.move_on_after(self.timeout):
                    await self._redis.aclose()

    def _release_lease(self) -> None:
        if self._lease is not None:
            if self._unsettled is None:
                self._unsettled = self._lease
            self._lease = None

    async def _take(self, cost: float) -> None:
        self._release_lease()
        want = min(self.capacity, cost + self.lease_size)
        sent_at = self._clock.now()
        granted, wait, member = await self._round_trip(need=cost, want=want, penalize=self._penalty_pending)
        received_at = self._clock.now()
        if self._fallback is not None:
            self._fallback = None
            logger.warning("rate limit store %s answers again; using the shared budget", self.url)
        self._lease = _Lease(
            member=member,
            remaining=granted,
            ready_at=received_at + wait,
            spend_until=sent_at + wait + _LEASE_SAFETY * self.lease_validity,
        )

    async def _round_trip(self, *, need: float, want: float, penalize: bool) -> tuple[float, float, str]:
        unsettled = self._unsettled
        returned = max(0.0, unsettled.remaining) if unsettled is not None else 0.0
        retry_after = self._retry_after if penalize else 0.0
        args = (
            self.rate,
            self.capacity,
            need,
            want,
            self.lease_validity,
            unsettled.member if unsettled is not None else "",
            returned,
            1 if penalize else 0,
            retry_after,
            self.decrease_factor,
            self.min_factor,
            self.recovery_seconds,
            self.decrease_cooldown,
            self._ttl_ms,
        )
        self.stats.round_trips += 1
        try:
            with anyio.fail_after(self.timeout):
                reply: Any = await self._script(keys=list(self.keys), args=list(args))
        except TimeoutError:
            raise _Unavailable(f"no answer within {self.timeout} s") from None
        except (RedisError, OSError) as exc:
            # Unreachable, or reachable but refusing (auth, ACL, a read-only replica after failover,
            # out of memory): either way there is no shared budget to draw from.
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from None
        try:
            granted, wait, member, rate_now = (
                float(reply[0]),
                float(reply[1]),
                _text(reply[2]),
                float(reply[3]),
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise RateLimiterUnavailableError(
                self.url, f"unexpected reply {reply!r} from the script"
            ) from exc
        # Settled and penalty applied: only now may they be forgotten.
        if unsettled is not None:
            self.stats.tokens_returned += returned
            self._unsettled = None
        if penalize:
            self._penalty_pending = False
            self._retry_after = 0.0
        self.current_rate = rate_now
        return granted, wait, member

    def _unavailable(self, detail: str) -> None:
        self.stats.unavailable += 1
        if self.on_unavailable == "raise":
            raise RateLimiterUnavailableError(self.url, detail)
        self._next_probe = self._clock.now() + self.probe_interval
        if self._fallback is None:
            # Leases from before the outage may have expired on the server; do not spend them.
            self._lease = None
            self._unsettled = None
            self._fallback = self._local_bucket()
            message = (
                f"rate limit store {self.url} unavailable ({detail}); limiting this process locally "
                f"to {self.rate / self.expected_workers:g}/s until it answers again"
            )
            warnings.warn(message, RateLimiterFallbackWarning, stacklevel=4)
            logger.warning(message)

    def _local_bucket(self) -> TokenBucket:
        from .ratelimit import TokenBucket

        share = self.expected_workers
        return TokenBucket(self.rate / share, max(1.0, self.capacity / share), clock=self._clock)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
