"""The transport every Amperity request goes through, below the generated code and the auth flow.

``AmperityTransport`` wraps any ``httpx.AsyncBaseTransport`` (by default the aiohttp-based one,
whose pool holds up under concurrency where httpx's own degrades) and, for each request:

1. finds the operation from the method and path (``OperationRegistry.match``), sets
   ``amperity-tenant`` and the ``api-version`` of the operation's API, and refuses an unstable-only
   operation while that API is used at a stable version;
2. takes a token from the operation's rate limiter before every attempt (retries spend budget too);
3. retries what is safe to retry: idempotent requests on 429, 500, 502, 503, 504, timeouts and
   dropped connections; other requests (starting or stopping a workflow) only on 429 and on
   failures that prove the request never left the client, so nothing is ever done twice;
4. waits between attempts with exponential backoff and full jitter, or as long as ``Retry-After``
   asks, never past the policy's deadline, and logs each retry (method, path, reason, attempt,
   delay; never headers);
5. warns once per operation when the server announces ``Deprecation`` or ``Sunset``.

The response body is read here, so that a connection dropped while the body streams in is retried
like any other dropped connection, and so that no discarded attempt holds a connection.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import ssl
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC
from random import random as _uniform

import anyio
import attrs
import httpx
import sniffio

from .clock import Clock, SystemClock
from .errors import AmperityDeprecationWarning, APIConnectionError, APITimeoutError, UnstableOperationError
from .operations import CONTROL_PLANE, REGISTRY, OperationInfo, OperationRegistry
from .ratelimit import RateLimiter

logger = logging.getLogger("amperity_async")

IDEMPOTENT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NON_IDEMPOTENT_RETRY_STATUSES = frozenset({429})
UNKNOWN_OPERATION = "(unknown operation)"
_DEPRECATION_HEADERS = (b"deprecation", b"sunset")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"RetryPolicy.{attribute.name} must be a non-negative number of seconds, got {value!r}"
        )


def _retry_count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"RetryPolicy.max_retries must be a non-negative integer, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry.

    The wait before retry ``n`` (0-based) is ``random() * min(backoff_cap, backoff_base * 2**n)``
    unless the server sent ``Retry-After``, which wins; a ``Retry-After`` longer than
    ``max_retry_after`` is not waited for (the response is returned as is). ``deadline``: seconds
    from the first attempt after which no retry starts.
    """

    max_retries: int = attrs.field(default=5, validator=_retry_count)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_cap: float = attrs.field(default=8.0, validator=_non_negative)
    deadline: float | None = attrs.field(default=None, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    def backoff(self, retry: int, random: Callable[[], float]) -> float:
        return random() * min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry, 64))


@attrs.define
class RequestCounts:
    """Counters of one transport (or of one operation on it). ``requests`` counts attempts sent."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    errors: int = 0


@attrs.define
class TransportStats(RequestCounts):
    """Totals, plus the same counters per operation name (``list_segment``, ...)."""

    by_operation: dict[str, RequestCounts] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Route:
    """What the transport needs to know about requests to one method and path, worked out once."""

    operation: OperationInfo | None
    label: str
    api_version: str
    retry_statuses: frozenset[int]
    idempotent: bool
    counts: RequestCounts
    unstable: tuple[str, str, str] | None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date; ``now`` is epoch
    seconds), or ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _from_aiohttp(exc: BaseException) -> BaseException | None:
    # httpx-aiohttp maps most aiohttp failures, read timeouts and dropped connections included, to
    # httpx.ConnectTimeout; only the aiohttp exception it chains says what actually happened.
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        return cause
    return None


def _never_sent(exc: httpx.TransportError) -> bool:
    """True only when the failure proves the request never reached the server."""
    cause = _from_aiohttp(exc)
    if cause is not None:
        import aiohttp

        return isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _is_timeout(exc: httpx.TransportError) -> bool:
    cause = _from_aiohttp(exc)
    if cause is not None:
        return isinstance(cause, TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


async def _close(response: httpx.Response) -> None:
    # Shielded: a request cancelled while its body streams in must still hand its connection back.
    with anyio.CancelScope(shield=True):
        await response.aclose()


def _retryable_failure(exc: httpx.TransportError) -> bool:
    return isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


class AmperityTransport(httpx.AsyncBaseTransport):
    """Headers, rate limits, retries and deprecation warnings around an inner transport.

    ``base_path`` is the path of the API base URL (``/api``); ``api_versions`` maps each API
    (``control-plane``, ``profile``) to the version to send. ``limiter_for`` gives the rate limiter
    of an operation (``None`` for requests the registry does not know), or ``None`` for no limit.
    Closing this transport closes ``inner``.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        tenant: str,
        base_path: str,
        api_versions: Mapping[str, str],
        limiter_for: Callable[[OperationInfo | None], RateLimiter | None],
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock | None = None,
        random: Callable[[], float] = _uniform,
        registry: OperationRegistry = REGISTRY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not tenant:
            raise ValueError("tenant must be the Amperity tenant ID, e.g. 'acme'")
        self._inner = inner
        self._tenant = tenant
        self._base_path = base_path.rstrip("/")
        self._api_versions = dict(api_versions)
        self._limiter_for = limiter_for
        self._retry = retry
        self._clock = clock or SystemClock()
        self._random = random
        self._registry = registry
        self._wall_clock = wall_clock
        self._deprecations_warned: set[str] = set()
        self.stats = TransportStats()
        # Paginating calls one path over and over; ids in paths make the set of paths open-ended,
        # hence a bounded cache.
        self._route = functools.lru_cache(maxsize=2048)(self._find_route)

    def _version_for(self, api: str) -> str:
        version = self._api_versions.get(api)
        if version is not None:
            return version
        if api in self._registry.api_versions:
            return self._registry.default_version(api)
        return self._api_versions.get(CONTROL_PLANE) or self._registry.default_version(CONTROL_PLANE)

    def _find_route(self, method: str, path: str) -> _Route:
        operation = None
        if path == self._base_path or path.startswith(self._base_path + "/"):
            operation = self._registry.match(method, path[len(self._base_path) :] or "/")
        if operation is None:
            label, version, unstable = UNKNOWN_OPERATION, self._version_for(CONTROL_PLANE), None
            idempotent = method in ("GET", "HEAD")
        else:
            label, version, unstable = operation.name, self._version_for(operation.api), None
            idempotent = operation.idempotent
            if operation.unstable_only and version != operation.stability:
                unstable = (operation.name, version, operation.stability)
        return _Route(
            operation=operation,
            label=label,
            api_version=version,
            retry_statuses=IDEMPOTENT_RETRY_STATUSES if idempotent else NON_IDEMPOTENT_RETRY_STATUSES,
            idempotent=idempotent,
            counts=self.stats.by_operation.setdefault(label, RequestCounts()),
            unstable=unstable,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self._route(request.method, request.url.path)
        if route.unstable is not None:
            raise UnstableOperationError(*route.unstable)
        headers = request.headers
        headers["amperity-tenant"] = self._tenant
        headers["api-version"] = route.api_version
        if not isinstance(request.stream, httpx.ByteStream):
            # A streamed body cannot be sent twice; buffer it so that a retry sends the same bytes.
            await request.aread()
        limiter = self._limiter_for(route.operation)
        clock, stats, counts = self._clock, self.stats, route.counts
        deadline = clock.now() + self._retry.deadline if self._retry.deadline is not None else None
        retry = 0
        while True:
            if limiter is not None:
                await limiter.acquire()
            stats.requests += 1
            counts.requests += 1
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError as exc:
                delay = self._delay_after_failure(request, route, exc, retry, deadline, may_be_unsent=True)
            else:
                if route.label not in self._deprecations_warned:
                    self._check_deprecation(route, response)
                status_delay = None
                if response.status_code >= 400:
                    status_delay = self._delay_after_status(
                        request, route, response, limiter, retry, deadline
                    )
                if status_delay is None:
                    try:
                        await response.aread()
                        return response
                    except httpx.TransportError as exc:
                        await _close(response)
                        delay = self._delay_after_failure(
                            request, route, exc, retry, deadline, may_be_unsent=False
                        )
                    except BaseException:
                        await _close(response)
                        raise
                else:
                    await _close(response)
                    delay = status_delay
            await clock.sleep_until(clock.now() + delay)
            retry += 1

    def _delay_after_status(
        self,
        request: httpx.Request,
        route: _Route,
        response: httpx.Response,
        limiter: RateLimiter | None,
        retry: int,
        deadline: float | None,
    ) -> float | None:
        """Seconds to wait before retrying after an error status, or ``None`` to return it."""
        status = response.status_code
        counts = route.counts
        retry_after: float | None = None
        if status == 429 or status in route.retry_statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._wall_clock())
        if status == 429:
            self.stats.rate_limited += 1
            counts.rate_limited += 1
            if limiter is not None:
                limiter.on_rate_limited(
                    None if retry_after is None else min(retry_after, self._retry.max_retry_after)
                )
        elif status >= 500:
            self.stats.server_errors += 1
            counts.server_errors += 1
        if status not in route.retry_statuses:
            return None
        policy = self._retry
        if retry >= policy.max_retries:
            return None
        if retry_after is not None and retry_after > policy.max_retry_after:
            logger.warning(
                "not retrying %s %s: the server asked to wait %.0fs (Retry-After), more than max_retry_after=%.0fs",
                request.method,
                request.url.path,
                retry_after,
                policy.max_retry_after,
            )
            return None
        delay = retry_after if retry_after is not None else policy.backoff(retry, self._random)
        if deadline is not None and self._clock.now() + delay > deadline:
            return None
        self.stats.retries += 1
        counts.retries += 1
        logger.log(
            logging.INFO if status == 429 else logging.WARNING,
            "retrying %s %s after status %d (retry %d of %d) in %.3fs",
            request.method,
            request.url.path,
            status,
            retry + 1,
            policy.max_retries,
            delay,
        )
        return delay

    def _delay_after_failure(
        self,
        request: httpx.Request,
        route: _Route,
        exc: httpx.TransportError,
        retry: int,
        deadline: float | None,
        *,
        may_be_unsent: bool,
    ) -> float:
        """Seconds to wait before retrying after a transport failure; raises when not retrying."""
        self.stats.errors += 1
        route.counts.errors += 1
        name = type(exc).__name__
        policy = self._retry
        if route.idempotent:
            why_not = None if _retryable_failure(exc) else "not a transient failure"
        elif may_be_unsent and _never_sent(exc):
            why_not = None
        else:
            why_not = f"not resent: the {request.method} request may have reached the server"
        delay = 0.0
        if why_not is None:
            if retry >= policy.max_retries:
                why_not = f"gave up after {retry + 1} attempts"
            else:
                delay = policy.backoff(retry, self._random)
                if deadline is not None and self._clock.now() + delay > deadline:
                    why_not = f"gave up after {retry + 1} attempts: the next would start after the deadline"
        if why_not is not None:
            error_type = APITimeoutError if _is_timeout(exc) else APIConnectionError
            detail = str(exc) or "no detail"
            raise error_type(
                f"{name}: {detail} ({why_not})", method=request.method, url=str(request.url)
            ) from exc
        self.stats.retries += 1
        route.counts.retries += 1
        logger.warning(
            "retrying %s %s after %s (retry %d of %d) in %.3fs",
            request.method,
            request.url.path,
            name,
            retry + 1,
            policy.max_retries,
            delay,
        )
        return delay

    def _check_deprecation(self, route: _Route, response: httpx.Response) -> None:
        # Runs on every response until the operation has warned: one pass over the raw headers
        # costs less than two lookups by name.
        for key, _ in response.headers.raw:
            if key.lower() in _DEPRECATION_HEADERS:
                break
        else:
            return
        headers = response.headers
        deprecation = headers.get("deprecation")
        sunset = headers.get("sunset")
        self._deprecations_warned.add(route.label)
        logger.warning(
            "%s is deprecated by Amperity (Deprecation: %s, Sunset: %s, api-version %s)",
            route.label,
            deprecation or "-",
            sunset or "-",
            route.api_version,
        )
        warnings.warn(AmperityDeprecationWarning(route.label, deprecation, sunset), stacklevel=2)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return f"AmperityTransport(tenant={self._tenant!r}, inner={self._inner!r}, retry={self._retry!r})"


DEFAULT_MAX_CONNECTIONS = 100


class _PerBackendTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp on asyncio, httpx's own transport on trio (aiohttp runs on asyncio only).

    The choice waits for the first request, because clients are often built before the event
    loop runs.
    """

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        self._limits = limits
        self._verify = verify
        self._chosen: httpx.AsyncBaseTransport | None = None

    def _choose(self) -> httpx.AsyncBaseTransport:
        transport: httpx.AsyncBaseTransport
        if sniffio.current_async_library() == "asyncio":
            try:
                from httpx_aiohttp import AiohttpTransport
            except ImportError:  # the fast transport is a dependency, but may be uninstalled
                transport = httpx.AsyncHTTPTransport(limits=self._limits, verify=self._verify)
            else:
                transport = AiohttpTransport(limits=self._limits, verify=self._verify)
        else:
            transport = httpx.AsyncHTTPTransport(limits=self._limits, verify=self._verify)
        self._chosen = transport
        return transport

    @property
    def chosen(self) -> httpx.AsyncBaseTransport | None:
        """The transport in use, once the first request has picked it."""
        return self._chosen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._chosen or self._choose()
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._chosen is not None:
            await self._chosen.aclose()

    def __repr__(self) -> str:
        return f"default_inner_transport(chosen={type(self._chosen).__name__ if self._chosen else None})"


def default_inner_transport(
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    keepalive_expiry: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncBaseTransport:
    """The fastest transport available: httpx-aiohttp on asyncio, httpx's own on trio.

    Every connection of the pool is kept alive for reuse (a bulk extraction with 50 tasks should
    never reconnect). TLS certificates are verified unless ``verify`` says otherwise. Timeouts come
    from the httpx client, per request.
    """
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return _PerBackendTransport(limits=limits, verify=verify)
