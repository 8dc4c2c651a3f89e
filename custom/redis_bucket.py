"""One rate budget shared by every process and machine that names the same tenant and API, held in Redis.

Install with the extra ``amperity-async[redis]``. Runs on asyncio (redis-py's asyncio client).

How the budget stays exact
--------------------------
The budget lives in three Redis keys and is refilled and taken from in one Lua script that reads
the Redis server's clock (``TIME``), so the workers' clocks never matter. Every grant is a *lease*:
the tokens the requester spends at once (``need``) plus, at high rates, up to ``lease_size``
*extras* the process hands out locally to its next callers, so most acquires cost no round trip.

Two limits apply to every grant, both enforced inside the script:

- **The token bucket** (``rate``, ``capacity``): ``level = tokens in the bucket + tokens held in
  leases whose wait is over``, refilled only while ``level <= capacity`` (a lease granted on credit
  is debt, not level, until refill has covered it). Unused tokens go back into the bucket when the
  lease is settled (on the next round trip, on ``aclose``, or once the lease is stale). A lease the
  script has not heard back from by its expiry is counted as spent, never refunded, so a crashed
  process cannot hand out tokens twice. A process stops spending a lease before the server's
  expiry, measured from the moment it *sent* the request (which precedes the grant).
- **The window guard** (``window=(count, seconds)``, by default the rate per 1.02 s): the grants of
  all workers together, counted on the server's clock, never put more than ``count`` tokens into
  any ``seconds``-long interval. The part a requester spends at once is recorded as a *point* at
  the moment its wait ends; a process that spends it late (a late wake-up, a stalled event loop)
  says so on its next round trip and the point moves to that later time, and a point handed back
  unspent leaves the window. Extras may be spent at any moment until the lease is settled, so they
  count in every window while the lease is out, and become a point at the settle time (an upper
  bound of the moments they were spent), or at the lease's expiry if it never is. ``seconds`` a
  little over one second leaves room for the jitter between a grant and the request reaching the
  API, so a server that counts strictly per second never sees ``count + 1``.

A grant is made when both allow it; otherwise the script grants on credit and returns how long to
wait (the later of the bucket's refill and the moment enough points leave the window), and the
caller sleeps exactly that long. Within one process a FIFO lock admits one requester at a time,
so each process has at most one reservation outstanding, waits stay short, and a lowered rate
after a 429 applies to every process's next reservation. With ``rate`` set to the server's limit
(``for_api`` does), the bucket absorbs late wake-ups and the window keeps every second at the
limit.

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
limits this process with an in-process ``TokenBucket`` at ``rate / expected_workers`` (and its share
of the window), trying Redis again at most every ``probe_interval`` seconds and returning to it
once it answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
import warnings
from typing import TYPE_CHECKING, Any, Literal, Self, TypedDict

import anyio
import attrs

from .client import CONTROL_PLANE_RATE, PROFILE_RATE
from .clock import Clock, SystemClock
from .errors import ConfigurationError, RateLimiterFallbackWarning, RateLimiterUnavailableError
from .operations import CONTROL_PLANE, PROFILE

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
    from typing_extensions import Unpack

    from .ratelimit import TokenBucket

__all__ = ["Grant", "RedisBucketOptions", "RedisBucketStats", "RedisTokenBucket", "redact_url"]

logger = logging.getLogger("amperity_async.redis_bucket")

KEY_PREFIX = "amperity-async"
_MAX_LEASE = 50
_LEASE_RATE_DIVISOR = 100
# Spend a lease only until this fraction of its validity has passed (measured from the request's
# send time), so that a clock running slightly fast here never spends past the server's expiry.
_LEASE_SAFETY = 0.9
_EPSILON = 1e-9
_DEFAULT_CAPACITY_SECONDS = 0.1
# The window guard's default length: one second plus room for the jitter between a grant on the
# Redis server and the request's arrival at the API (another process may send its request a few
# milliseconds later than it was granted, the next one sooner).
DEFAULT_WINDOW_SECONDS = 1.02
# How late after its ready time a handed-over point may still be spent: the jitter the default
# window leaves room for.
_POINT_GRACE = DEFAULT_WINDOW_SECONDS - 1.0
# The documented limits, by API; `for_api` accepts the short alias too.
_DOCUMENTED_RATES = {CONTROL_PLANE: CONTROL_PLANE_RATE, PROFILE: PROFILE_RATE}
_API_ALIASES = {"control": CONTROL_PLANE, CONTROL_PLANE: CONTROL_PLANE, PROFILE: PROFILE}
# APIs whose limit Amperity counts across a tenant and its sandboxes ("2000 requests per second
# across the entire tenant, including sandboxes"); the control-plane limit is documented without
# that, so each sandbox keeps its own control-plane budget.
_FAMILY_WIDE_APIS = frozenset({PROFILE})

# KEYS[1]: the bucket hash. KEYS[2]: live leases, member "<seq>/<extras>/<need>:<granted>", score =
# expiry (server time). KEYS[3]: the window's points, member "<seq>:<tokens>", score = the server
# time the tokens count from; a lease's need is the point "<seq>:<need>" of the same seq. Numbers
# travel as strings: Redis truncates Lua numbers returned from a script to integers.
_SCRIPT = """
local bucket, leases, window = KEYS[1], KEYS[2], KEYS[3]
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
local window_count = tonumber(ARGV[15])
local window_seconds = tonumber(ARGV[16])
local point_delay = tonumber(ARGV[17])
local epsilon = 1e-9

local function num(x) return string.format('%.17g', x) end
-- granted, extras, and the member of the need's point. A lease member without "/<extras>/<need>"
-- (written by a version without the window guard) counts all its tokens as extras: the safe reading.
local function lease_parts(member)
  local granted = tonumber(string.match(member, ':([^:]+)$'))
  local seq, extras, need = string.match(member, '^([^/]+)/([^/]+)/([^:]+):')
  if seq == nil then return granted, granted, nil end
  return granted, tonumber(extras), seq .. ':' .. need
end
local function point_tokens(member) return tonumber(string.match(member, ':([^:]+)$')) end

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local horizon = now - window_seconds

local f = redis.call('HMGET', bucket, 'tokens', 'ts', 'factor', 'factor_ts', 'in_window', 'keep_until')
local tokens = tonumber(f[1]) or capacity
local ts = tonumber(f[2]) or now
local factor0 = tonumber(f[3]) or 1
local factor_ts = tonumber(f[4]) or 0
local in_window = tonumber(f[5]) or 0
local keep_until = tonumber(f[6]) or 0

local function add_point(at, count, member)
  if count > epsilon and at > horizon then
    member = member or (redis.call('HINCRBY', bucket, 'seq', 1) .. ':' .. num(count))
    redis.call('ZADD', window, num(at), member)
    in_window = in_window + count
  end
end

-- A lease not settled by its expiry counts as spent: its holder stopped using it before then, so
-- its extras count in the window from the expiry on.
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', num(now), 'WITHSCORES')
for i = 1, #expired, 2 do
  local _, extras = lease_parts(expired[i])
  add_point(tonumber(expired[i + 1]), extras)
end
redis.call('ZREMRANGEBYSCORE', leases, '-inf', num(now))
if settle ~= '' and redis.call('ZREM', leases, settle) == 1 then
  local granted, extras, point = lease_parts(settle)
  local back = math.min(math.max(returned, 0), granted)
  tokens = tokens + back
  -- The extras not handed back were spent before this round trip was sent: now is a bound.
  add_point(now, extras - math.min(back, extras))
  -- A holder spends the need first, so handing back more than the extras means the need was not
  -- (all) spent: that part leaves the window.
  local at = point and redis.call('ZSCORE', window, point)
  if at and back > extras + epsilon then
    local need_tokens = point_tokens(point)
    redis.call('ZREM', window, point)
    in_window = in_window - need_tokens
    add_point(tonumber(at), need_tokens - (back - extras))
  elseif at and point_delay > 0 then
    -- The need was spent this much after its ready time (a late wake-up): it counts from then.
    redis.call('ZADD', window, 'XX', num(tonumber(at) + point_delay), point)
  end
end

local leaving = redis.call('ZRANGEBYSCORE', window, '-inf', num(horizon))
for _, member in ipairs(leaving) do in_window = in_window - point_tokens(member) end
if #leaving > 0 then redis.call('ZREMRANGEBYSCORE', window, '-inf', num(horizon)) end
if redis.call('ZCARD', window) == 0 then in_window = 0 end

-- Tokens in leases whose wait is over (expiry - validity <= now) may be spent at any moment, so
-- they count against the capacity. Leases still waiting out a reservation do not: their tokens
-- are the bucket's debt, not yet covered by refill. Every lease's extras count in the window.
local held, outstanding, first_expiry = 0, 0, nil
local live = redis.call('ZRANGE', leases, 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  local granted, extras = lease_parts(live[i])
  local expiry = tonumber(live[i + 1])
  outstanding = outstanding + extras
  if expiry <= now + validity then held = held + granted end
  if first_expiry == nil or expiry < first_expiry then first_expiry = expiry end
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

-- When `count` more tokens fit in the window: once enough of the oldest points have left it.
-- nil when the points cannot free enough (the leases out hold the rest).
local function window_due(count)
  local over = in_window + outstanding + count - window_count
  if over <= epsilon then return now end
  local freed, offset = 0, 0
  while true do
    local batch = redis.call('ZRANGEBYSCORE', window, '-inf', '+inf', 'WITHSCORES', 'LIMIT', offset, 64)
    if #batch == 0 then return nil end
    for i = 1, #batch, 2 do
      freed = freed + point_tokens(batch[i])
      if freed >= over - epsilon then return tonumber(batch[i + 1]) + window_seconds end
    end
    offset = offset + 64
  end
end

local granted, wait, member = 0, 0, ''
if want > 0 then
  local available = math.min(tokens, window_count - in_window - outstanding)
  if available >= want - epsilon then
    granted = want
  elseif available >= need - epsilon then
    granted = need + math.floor(available - need + epsilon)
  else
    granted = want
    local due = window_due(want)
    if due == nil then
      granted = need
      due = window_due(need)
    end
    if due == nil then
      -- Other processes' leases fill the window; the first of them is settled or expires by then.
      granted = 0
      wait = math.max((first_expiry or now + window_seconds) - now, epsilon)
    else
      wait = math.max(0, due - now, (granted - tokens) / (rate * factor))
    end
  end
  if granted > 0 then
    tokens = tokens - granted
    local seq = redis.call('HINCRBY', bucket, 'seq', 1)
    member = seq .. '/' .. num(granted - need) .. '/' .. num(need) .. ':' .. num(granted)
    add_point(now + wait, need, seq .. ':' .. num(need))
    redis.call('ZADD', leases, num(now + wait + validity), member)
    -- Reservations and their points must outlive the keys' idle expiry.
    keep_until = math.max(keep_until, now + wait + validity + window_seconds)
  end
end

redis.call('HSET', bucket, 'tokens', num(tokens), 'ts', num(now), 'factor', num(factor0),
  'factor_ts', num(factor_ts), 'in_window', num(in_window), 'keep_until', num(keep_until))
local ttl = math.max(ttl_ms, math.ceil((keep_until - now) * 1000))
redis.call('PEXPIRE', bucket, ttl)
redis.call('PEXPIRE', leases, ttl)
redis.call('PEXPIRE', window, ttl)
return {num(granted), num(wait), member, num(rate * factor), num(now)}
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


@attrs.frozen
class Grant:
    """One answer of the script: ``granted`` tokens under lease ``member`` ("" if none), usable
    ``wait`` seconds after ``server_time`` (the Redis server's clock when it decided)."""

    granted: float
    wait: float
    member: str
    server_time: float


@attrs.define
class _Lease:
    member: str
    remaining: float
    ready_at: float
    spend_until: float
    round_trip: float = 0.0
    """Seconds from sending the request for this lease to its answer."""
    point: float = 0.0
    """Tokens the script counted in the window at ``ready_at`` that are not spent yet."""
    point_delay: float = 0.0
    """At most how long after the script's ready time the point was spent."""
    handed_over: bool = False
    """The requester was cancelled while waiting and no caller has taken its place yet."""


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


def _window(value: tuple[int, float] | None, rate: float) -> tuple[int, float]:
    if value is None:
        return max(1, math.floor(rate + _EPSILON)), DEFAULT_WINDOW_SECONDS
    try:
        count, seconds = value
    except (TypeError, ValueError):
        raise ConfigurationError(f"window must be a pair (count, seconds), got {value!r}") from None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigurationError(f"window count must be an integer >= 1, got {count!r}")
    return count, _positive("window seconds", seconds)


def _key_part(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in ":{}") or value != value.strip():
        raise ConfigurationError(
            f"{name} must be a non-empty string without ':', '{{', '}}' or surrounding spaces "
            f"(it names the shared Redis keys), got {value!r}"
        )
    return value


class RedisBucketOptions(TypedDict, total=False):
    """The settings ``RedisTokenBucket.for_api`` passes on to the constructor (see there)."""

    capacity: float | None
    lease_size: int | None
    window: tuple[int, float] | None
    on_unavailable: Literal["raise", "local"]
    expected_workers: int
    timeout: float
    clock: Clock | None
    lease_validity: float
    decrease_factor: float
    min_factor: float
    recovery_seconds: float
    decrease_cooldown: float
    probe_interval: float


class RedisTokenBucket:
    """A token bucket shared through Redis; same interface as ``TokenBucket``.

    ``url_or_client`` is a ``redis://``/``rediss://``/``unix://`` URL (a client is created with
    ``timeout`` as its socket timeouts and closed by ``aclose``) or a ``redis.asyncio.Redis`` you
    own. Use as an async context manager, or call ``aclose`` to return unused tokens.

    The budget is keyed by ``tenant`` and ``api``; for the Profile API, whose limit covers a tenant
    and its sandboxes, ``parent_tenant`` (the production tenant of a sandbox) keys it instead, so a
    sandbox and its production tenant share one budget. Every worker sharing a budget must use the
    same ``rate``, ``capacity`` and ``window``. ``window=(count, seconds)``: no ``seconds``-long
    interval holds more than ``count`` tokens of all workers together; by default ``rate`` tokens
    per 1.02 s, so that ``rate`` can be the server's per-second limit. ``for_api`` builds a bucket
    with Amperity's documented limit.
    """

    @classmethod
    def for_api(
        cls,
        url_or_client: str | redis_asyncio.Redis,
        *,
        tenant: str,
        api: Literal["control-plane", "control", "profile"],
        parent_tenant: str | None = None,
        **options: Unpack[RedisBucketOptions],
    ) -> Self:
        """The shared budget of ``api`` at its documented limit (10/s control plane, 2000/s Profile API).

        ``parent_tenant``: for a sandbox, its production tenant; the Profile API budget is then the
        one the production tenant and all its sandboxes share. The control-plane budget stays the
        sandbox's own.
        """
        canonical = _API_ALIASES.get(api) if isinstance(api, str) else None
        if canonical is None:
            raise ConfigurationError(
                f"api must be one of {', '.join(repr(name) for name in _API_ALIASES)}, got {api!r}"
            )
        if "rate" in options:
            raise ConfigurationError(
                "for_api uses the documented rate; pass rate= to RedisTokenBucket instead"
            )
        return cls(
            url_or_client,
            tenant=tenant,
            api=canonical,
            rate=_DOCUMENTED_RATES[canonical],
            parent_tenant=parent_tenant,
            **options,
        )

    def __init__(
        self,
        url_or_client: str | redis_asyncio.Redis,
        *,
        tenant: str,
        api: str,
        rate: float,
        parent_tenant: str | None = None,
        capacity: float | None = None,
        lease_size: int | None = None,
        window: tuple[int, float] | None = None,
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
        self.parent_tenant = None if parent_tenant is None else _key_part("parent_tenant", parent_tenant)
        # Whose budget this is: the tenant family's where the API's limit covers the family.
        self.budget_owner = (
            self.parent_tenant
            if self.parent_tenant is not None and self.api in _FAMILY_WIDE_APIS
            else self.tenant
        )
        self.rate = _positive("rate", rate)
        auto_lease = min(_MAX_LEASE, int(self.rate // _LEASE_RATE_DIVISOR))
        # The window keeps every second to the limit, so the capacity need not: at low rates two
        # tokens let a late wake-up be made up; at high rates the leases processes hold count
        # against it until settled, and 0.1 s of tokens leaves room for several of them.
        self.capacity = (
            _positive("capacity", capacity)
            if capacity is not None
            else float(max(2, 2 * auto_lease + 1, math.floor(self.rate * _DEFAULT_CAPACITY_SECONDS)))
        )
        self.window = _window(window, self.rate)
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
        prefix = f"{KEY_PREFIX}:{{{self.budget_owner}:{self.api}}}"
        # The braces are a Redis Cluster hash tag: the keys of one budget land in one slot.
        self.keys = (f"{prefix}:bucket", f"{prefix}:leases", f"{prefix}:window")
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
        owner = f", budget of {self.budget_owner!r}" if self.budget_owner != self.tenant else ""
        return (
            f"RedisTokenBucket({self.url!r}, tenant={self.tenant!r}, api={self.api!r}{owner}, "
            f"rate={self.rate}, "
            f"capacity={self.capacity}, window={self.window}, lease_size={self.lease_size}, {mode})"
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
        if cost > self.window[0]:
            raise ConfigurationError(f"cost {cost} exceeds the window's count {self.window[0]}")
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
                now = self._clock.now()
                if lease is not None and now < lease.spend_until:
                    if now < lease.ready_at:
                        # A caller in line before the ready time spends the point as promptly as
                        # the requester would have, whoever that is.
                        lease.handed_over = False
                        try:
                            await self._clock.sleep_until(lease.ready_at)
                        except BaseException:
                            # Cancellation here keeps the lease for the next caller in line.
                            lease.handed_over = True
                            raise
                        continue
                    if _spend(lease, cost, now):
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
            if self._unsettled is None and self._lease.member:
                self._unsettled = self._lease
            self._lease = None

    async def _take(self, cost: float) -> None:
        self._release_lease()
        want = min(self.capacity, self.window[0], cost + self.lease_size)
        sent_at = self._clock.now()
        grant = await self._round_trip(need=cost, want=want, penalize=self._penalty_pending)
        received_at = self._clock.now()
        granted, wait, member = grant.granted, grant.wait, grant.member
        if self._fallback is not None:
            self._fallback = None
            logger.warning("rate limit store %s answers again; using the shared budget", self.url)
        if not member:
            # Nothing granted: the window is full of other processes' leases. Ask again once the
            # first of them is settled or has expired (the script said when).
            self._lease = _Lease(
                member="", remaining=0.0, ready_at=received_at + wait, spend_until=received_at + wait
            )
            return
        self._lease = _Lease(
            member=member,
            remaining=granted,
            ready_at=received_at + wait,
            spend_until=sent_at + wait + _LEASE_SAFETY * self.lease_validity,
            round_trip=received_at - sent_at,
            point=cost,
        )

    async def _round_trip(self, *, need: float, want: float, penalize: bool) -> Grant:
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
            self.window[0],
            self.window[1],
            unsettled.point_delay if unsettled is not None else 0.0,
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
            grant = Grant(float(reply[0]), float(reply[1]), _text(reply[2]), float(reply[4]))
            rate_now = float(reply[3])
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
        return grant

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
        count, seconds = self.window
        return TokenBucket(
            self.rate / share,
            max(1.0, self.capacity / share),
            clock=self._clock,
            window=(max(1, count // share), seconds),
        )


def _spend(lease: _Lease, cost: float, now: float) -> bool:
    """Take ``cost`` tokens from ``lease`` if it has them."""
    if lease.point > 0 and lease.handed_over and now > lease.ready_at + _POINT_GRACE:
        # The script counted these tokens in the window at the ready time; spent this much later
        # they would fall outside it. They stay counted and are not handed back: forfeited.
        lease.remaining = max(0.0, lease.remaining - lease.point)
        lease.point = 0.0
    if lease.remaining < cost - _EPSILON:
        return False
    lease.remaining -= cost
    if lease.point > 0:
        lease.point = max(0.0, lease.point - cost)
        # The script's ready time was at most one round trip before this process's ready_at (the
        # script decided between the send and the answer); the rest is the lateness of this spend.
        lease.point_delay = lease.round_trip + max(0.0, now - lease.ready_at)
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
