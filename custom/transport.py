"""The transport every Amperity request goes through, below the generated code and the auth flow.

``AmperityTransport`` wraps any ``httpx.AsyncBaseTransport`` (by default the one from
``connections``) and, for each request:

1. finds the operation from the method and path (``OperationRegistry.match``), moves the request
   to its API's configured base URL (``bases.ApiBases``), sets ``amperity-tenant`` and, for an API
   that has versions, the ``api-version`` of the operation's API, and refuses an unstable-only
   operation while that API is used at a stable version; a body larger than the operation accepts
   is refused before anything is sent;
2. before every attempt (retries spend budget too) takes a token from the operation's rate
   limiter, then lets the auth flow put a current access token on the request;
3. bounds each attempt as a whole (connect, headers, the whole body: ``Bounds.timeout``) and the
   whole call (``Bounds.deadline``), and caps the body size (``Bounds.max_response_bytes``);
4. retries what is safe to retry: idempotent requests on 429, 500, 502, 503, 504, timeouts and
   dropped connections; other requests (starting or stopping a workflow, sending an event) only on
   429, on the statuses their spec says prove nothing was done (an event's 503), and on failures
   that prove the request never left the client, so nothing is ever done twice;
5. waits between attempts as ``retry.RetryPolicy`` says (backoff with full jitter, or the
   server's ``Retry-After`` up to its cap), never past the deadline, and logs each retry (method,
   path, reason, attempt, delay; never headers);
6. warns once per operation when the server announces ``Deprecation`` or ``Sunset``.

The response body is read here, so that a connection dropped while the body streams in is retried
like any other dropped connection, and so that no discarded attempt holds a connection.

All of it is ``exchange``, which sends through a ``Wire``: httpx requests come through
``handle_async_request`` (the generated functions, any httpx transport), and the client's fast path
calls ``exchange`` with its own requests over aiohttp (``fastwire``); routes, headers, limits,
bounds, retries and their statistics are this one object's for both.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from random import random as _uniform
from typing import TypeVar

import attrs
import httpx

from . import attempt
from .attempt import AttemptFailed, BodyTooLarge, HttpxWire, Wire
from .bases import ApiBases
from .calls import DEFAULT_BOUNDS, Bounds, CallContext, Outgoing
from .clock import Clock, SystemClock
from .errors import (
    AmperityDeprecationWarning,
    APIConnectionError,
    APITimeoutError,
    RequestTooLargeError,
    ResponseTooLargeError,
    UnstableOperationError,
)
from .operations import CONTROL_PLANE, REGISTRY, OperationInfo, OperationRegistry
from .ratelimit import RateLimiter
from .retry import DEFAULT_RETRY_POLICY, RetryPolicy, parse_retry_after
from .secrets import RedactedLog, Redactor

logger = logging.getLogger("amperity_async")

IDEMPOTENT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NON_IDEMPOTENT_RETRY_STATUSES = frozenset({429})
UNKNOWN_OPERATION = "(unknown operation)"
Q = TypeVar("Q", bound=Outgoing)
R = TypeVar("R")


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
class Route:
    """What the transport needs to know about requests to one method and path, worked out once."""

    operation: OperationInfo | None
    label: str
    api: str | None
    api_version: str | None
    """None for an API whose requests carry no version header."""
    retry_statuses: frozenset[int]
    idempotent: bool
    counts: RequestCounts
    unstable: tuple[str, str, str] | None
    headers: Mapping[str, str]
    """The headers every request of the route carries (tenant, api-version)."""


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


class AmperityTransport(httpx.AsyncBaseTransport):
    """Headers, rate limits, bounds, retries and deprecation warnings around an inner transport.

    ``bases`` moves each request from its spec URL to its API's configured base URL (None: requests
    go where their URL says); ``api_versions`` maps each API (``control-plane``, ``profile``) to the
    version to send (an API missing there gets the spec's default version; an API without versions
    gets no header). ``limiter_for`` gives the rate limiter of an operation (``None`` for requests
    the registry does not know), or ``None`` for no limit. ``redactor`` scrubs the texts of errors
    and log lines. Closing this transport closes ``inner``.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        tenant: str,
        api_versions: Mapping[str, str],
        bases: ApiBases | None = None,
        limiter_for: Callable[[OperationInfo | None], RateLimiter | None],
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        bounds: Bounds = DEFAULT_BOUNDS,
        clock: Clock | None = None,
        random: Callable[[], float] = _uniform,
        registry: OperationRegistry = REGISTRY,
        redactor: Redactor | None = None,
    ) -> None:
        if not tenant:
            raise ValueError("tenant must be the Amperity tenant ID, e.g. 'acme'")
        self._inner = inner
        self._wire = HttpxWire(inner)
        self._tenant = tenant
        self._bases = bases
        self._api_versions = dict(api_versions)
        self._limiter_for = limiter_for
        self._retry = retry
        self._bounds = bounds
        self._clock = clock or SystemClock()
        self._random = random
        self._registry = registry
        self._redactor = redactor if redactor is not None else Redactor()
        self._log = RedactedLog(logger, self._redactor)
        self._deprecations_warned: set[str] = set()
        self.stats = TransportStats()
        # Paginating calls one path over and over; ids in paths make the set of paths open-ended,
        # hence a bounded cache.
        self._route = functools.lru_cache(maxsize=2048)(self._find_route)
        self._routes_by_operation: dict[str, Route] = {}

    @property
    def bounds(self) -> Bounds:
        return self._bounds

    def _version_for(self, api: str) -> str | None:
        described = self._registry.apis.get(api)
        if described is not None and not described.version_header:
            return None
        version = self._api_versions.get(api)
        if version is not None:
            return version
        if api in self._registry.api_versions:
            return self._registry.default_version(api)
        return self._api_versions.get(CONTROL_PLANE) or self._registry.default_version(CONTROL_PLANE)

    def _find_route(self, method: str, path: str) -> Route:
        return self._route_for(self._registry.match(method, path), method, path)

    def route_of(self, operation: OperationInfo) -> Route:
        """The route of ``operation``'s requests, for a caller that knows the operation already."""
        route = self._routes_by_operation.get(operation.operation_id)
        if route is None:
            route = self._route_for(operation, operation.method, operation.path)
            self._routes_by_operation[operation.operation_id] = route
        return route

    def _route_for(self, operation: OperationInfo | None, method: str, path: str) -> Route:
        unstable = None
        if operation is None:
            found = self._registry.api_of_path(path)
            api = found.name if found is not None else None
            label, version = UNKNOWN_OPERATION, self._version_for(api or CONTROL_PLANE)
            idempotent = method in ("GET", "HEAD")
            retry_statuses = IDEMPOTENT_RETRY_STATUSES if idempotent else NON_IDEMPOTENT_RETRY_STATUSES
        else:
            api, label, version = operation.api, operation.name, self._version_for(operation.api)
            idempotent = operation.idempotent
            # Only an API with versions has unstable operations that a stable version lacks.
            if version is not None and operation.unstable_only and version != operation.stability:
                unstable = (operation.name, version, operation.stability)
            retry_statuses = (
                IDEMPOTENT_RETRY_STATUSES
                if idempotent
                else NON_IDEMPOTENT_RETRY_STATUSES | operation.retryable_statuses
            )
        return Route(
            operation=operation,
            label=label,
            api=api,
            api_version=version,
            retry_statuses=retry_statuses,
            idempotent=idempotent,
            counts=self.stats.by_operation.setdefault(label, RequestCounts()),
            unstable=unstable,
            headers={"amperity-tenant": self._tenant} | ({} if version is None else {"api-version": version}),
        )

    def admit(self, route: Route, request: Outgoing, body_size: int) -> None:
        """Refuse, before anything is sent, a request its route must not send: an unstable-only
        operation under a stable version, a body larger than the operation accepts."""
        if route.unstable is not None:
            raise UnstableOperationError(*route.unstable)
        operation = route.operation
        limit = None if operation is None else operation.max_body_bytes
        if operation is not None and limit is not None and body_size > limit:
            raise RequestTooLargeError(
                operation=operation.name,
                size=body_size,
                limit=limit,
                method=request.method,
                url=self._shown_url(request),
            )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # The path as sent: an argument holding "/" (quoted in the URL) stays one segment.
        route = self._route(request.method, request.url.raw_path.partition(b"?")[0].decode("ascii"))
        if route.unstable is not None:
            raise UnstableOperationError(*route.unstable)
        if self._bases is not None:
            self._bases.place(request, route.api)
        headers = request.headers
        headers.update(route.headers)
        if not isinstance(request.stream, httpx.ByteStream):
            # A streamed body cannot be sent twice; buffer it so that a retry sends the same bytes,
            # with its length now known (some endpoints refuse chunked bodies).
            await request.aread()
            headers.pop("transfer-encoding", None)
            headers["content-length"] = str(len(request.content))
        self.admit(route, request, len(request.content))
        context = CallContext.of(request)
        if context is None:
            context = CallContext.start(self._bounds.deadline, self._clock)
            context.attach(request)
        return await self.exchange(request, route, context, self._wire)

    async def exchange(self, request: Q, route: Route, context: CallContext, wire: Wire[Q, R]) -> R:
        """Send ``request`` (carrying ``route.headers`` already) through ``wire`` within ``context``:
        the limiter's turn and a current token before each attempt, the attempt's bounds, retries.
        Returns the answer with its body read; a non-2xx answer is returned when not retried."""
        limiter = self._limiter_for(route.operation)
        clock, stats, counts = self._clock, self.stats, route.counts
        max_bytes = self._bounds.max_response_bytes
        retry = 0
        while True:
            await self._wait_turn(request, limiter, context)
            stats.requests += 1
            counts.requests += 1
            limit_at, bound = self._attempt_limit(context)
            response: R | None = None
            try:
                with attempt.bounded(clock, limit_at, bound):
                    response = await wire.send(request)
                    if route.label not in self._deprecations_warned:
                        self._check_deprecation(route, wire.deprecation(response))
                    status_delay = None
                    status = wire.status(response)
                    if status >= 400:
                        retry_after = (
                            wire.header(response, "retry-after")
                            if status == 429 or status in route.retry_statuses
                            else None
                        )
                        status_delay = self._delay_after_status(
                            request, route, status, retry_after, limiter, retry, context
                        )
                    if status_delay is None:
                        await wire.read_body(response, max_bytes)
                        return response
                    await wire.close(response)
                delay = status_delay
            except AttemptFailed as exc:
                # Before the headers came, a failure may prove the request never left.
                unsent = response is None
                delay = self._delay_after_failure(request, route, exc, retry, context, may_be_unsent=unsent)
            except BodyTooLarge as exc:
                raise ResponseTooLargeError(
                    method=request.method, url=self._shown_url(request), limit=exc.limit
                ) from None
            await clock.sleep_until(clock.now() + delay)
            retry += 1

    async def _wait_turn(self, request: Outgoing, limiter: RateLimiter | None, context: CallContext) -> None:
        """The rate limiter's wait, then a current token on the request; within the deadline."""
        authorize = context.authorize
        if limiter is None and authorize is None:
            return
        if context.deadline_at == math.inf:
            if limiter is not None:
                await limiter.acquire()
            if authorize is not None:
                await authorize(request)
            return
        with self._clock.cancel_at(context.deadline_at) as scope:
            if limiter is not None:
                await limiter.acquire()
            if authorize is not None:
                await authorize(request)
        if scope.cancelled_caught:
            raise APITimeoutError(
                f"{context.deadline_text()} passed while waiting for the rate limiter or an access token",
                method=request.method,
                url=self._shown_url(request),
                bound="deadline",
                seconds=context.deadline,
            )

    def _attempt_limit(self, context: CallContext) -> tuple[float, str]:
        """When this attempt must be over, and which bound that is."""
        timeout = self._bounds.timeout
        per_attempt = math.inf if timeout is None else self._clock.now() + timeout
        if context.deadline_at < per_attempt:
            return context.deadline_at, "deadline"
        return per_attempt, "timeout"

    def _shown_url(self, request: Outgoing) -> str:
        return self._redactor.scrub(str(request.url))

    def _delay_after_status(
        self,
        request: Outgoing,
        route: Route,
        status: int,
        retry_after_text: str | None,
        limiter: RateLimiter | None,
        retry: int,
        context: CallContext,
    ) -> float | None:
        """Seconds to wait before retrying after an error status, or ``None`` to return it."""
        counts = route.counts
        policy = self._retry
        retry_after: float | None = None
        if status == 429 or status in route.retry_statuses:
            retry_after = parse_retry_after(retry_after_text, self._clock.time())
        too_long = policy.exceeds_cap(retry_after)
        if status == 429:
            self.stats.rate_limited += 1
            counts.rate_limited += 1
            if limiter is not None:
                # A pause longer than the cap fails this call alone; it never stalls the others.
                limiter.on_rate_limited(None if too_long else retry_after)
        elif status >= 500:
            self.stats.server_errors += 1
            counts.server_errors += 1
        if status not in route.retry_statuses or not policy.allows_retry(retry):
            return None
        if too_long:
            self._log.warning(
                "not retrying %s %s: the server asked to wait %.0fs (Retry-After), "
                "more than max_retry_after=%.0fs",
                request.method,
                request.url.path,
                retry_after,
                policy.max_retry_after,
            )
            return None
        delay = policy.delay(retry, retry_after, self._random)
        if self._clock.now() + delay > context.deadline_at:
            return None
        self.stats.retries += 1
        counts.retries += 1
        self._log.log(
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
        request: Outgoing,
        route: Route,
        failed: AttemptFailed,
        retry: int,
        context: CallContext,
        *,
        may_be_unsent: bool,
    ) -> float:
        """Seconds to wait before retrying after a failed exchange; raises when not retrying."""
        self.stats.errors += 1
        route.counts.errors += 1
        failure = failed.failure
        policy = self._retry
        why_not: str | None
        if failed.bound == "deadline":
            why_not = f"{context.deadline_text()} passed"
        elif not failure.transient:
            why_not = "not a transient failure"
        elif route.idempotent or (may_be_unsent and failure.never_sent):
            why_not = None
        else:
            why_not = f"not resent: the {request.method} request may have reached the server"
        delay = 0.0
        past_deadline = failed.bound == "deadline"
        if why_not is None:
            if not policy.allows_retry(retry):
                why_not = f"gave up after {_attempts(retry + 1)}"
            else:
                delay = policy.backoff(retry, self._random)
                if self._clock.now() + delay > context.deadline_at:
                    why_not = (
                        f"gave up after {_attempts(retry + 1)}: "
                        f"the next would start after {context.deadline_text()}"
                    )
                    past_deadline = True
        if why_not is not None:
            error = self._error_for(request, failed, context, why_not, past_deadline=past_deadline)
            raise error from (None if failed.cause is None else self._redactor.safe_cause(failed.cause))
        self.stats.retries += 1
        route.counts.retries += 1
        self._log.warning(
            "retrying %s %s after %s (retry %d of %d) in %.3fs",
            request.method,
            request.url.path,
            failure.source,
            retry + 1,
            policy.max_retries,
            delay,
        )
        return delay

    def _error_for(
        self,
        request: Outgoing,
        failed: AttemptFailed,
        context: CallContext,
        why_not: str,
        *,
        past_deadline: bool,
    ) -> APIConnectionError:
        failure = failed.failure
        method, url = request.method, self._shown_url(request)
        if failed.bound == "deadline":
            message = f"timed out: {context.deadline_text()} passed before the answer was complete"
        elif failed.bound == "timeout":
            message = (
                f"timed out: no complete answer within the per-attempt timeout of {self._bounds.timeout:g} s"
            )
            message += f" ({why_not})"
        else:
            message = self._redactor.scrub(f"{failure.summary} ({failure.detail}; {why_not})")
        if not failure.is_timeout:
            return APIConnectionError(message, method=method, url=url, kind=failure.kind)
        # The bound that ended the call: the deadline when it stopped the retries, else one attempt's.
        if past_deadline:
            return APITimeoutError(
                message, method=method, url=url, bound="deadline", seconds=context.deadline
            )
        return APITimeoutError(message, method=method, url=url, bound="timeout", seconds=self._bounds.timeout)

    def _check_deprecation(self, route: Route, found: tuple[str | None, str | None] | None) -> None:
        if found is None:
            return
        deprecation, sunset = found
        self._deprecations_warned.add(route.label)
        self._log.warning(
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
        return (
            f"AmperityTransport(tenant={self._tenant!r}, inner={self._inner!r}, retry={self._retry!r}, "
            f"bounds={self._bounds!r})"
        )
