"""AmperityClient: the facade users await.

The layers, from the outside in: this facade (typed errors, response checks, pagination) ->
httpx.AsyncClient with ``AmperityAuth`` (the call's deadline, tokens, one refresh-and-replay on
401) -> ``AmperityTransport`` (tenant and version headers, rate limits, a current token on each
attempt, per-attempt bounds, retries) -> the inner transport (aiohttp by default). The generated
functions use the same httpx client, so raw generated calls get all of it too.

On asyncio with the default connections, ``call``/``pages``/``paginate`` skip httpx: ``fastpath``
builds each request in one piece and sends it over aiohttp through the same ``AmperityAuth`` and
``AmperityTransport`` objects (one set of tokens, limits, retries and statistics for both paths).

The client owns one ``Redactor``: it knows the token source's secrets and every token obtained,
and every error and log line that leaves the client is scrubbed by it.

Operations are described to this layer by the ``ENDPOINT`` descriptor of their generated module
(request builder, response and item models); ``call``/``pages``/``paginate`` on a module go
through the module's typed ``call``/``pages``/``items`` functions, whose signatures are what type
checkers see. The resource view (``client.workflows.run(...)``, generated in
``amperity_async.resources``) is a typed surface over the same three methods.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import math
import os
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, overload

import anyio
import anyio.abc
import httpx
import sniffio

from amperity_async.client import AuthenticatedClient
from amperity_async.models.error_response import ErrorResponse
from amperity_async.resources import ResourceView
from amperity_async.types import Response, Unset

from .answers import EmptyAnswer
from .auth import AmperityAuth
from .bases import ApiBases
from .calls import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, Bounds, CallContext
from .clock import Clock, SystemClock
from .connections import aiohttp_session_of, default_inner_transport
from .endpoints import Endpoint, ListEndpoint
from .errors import (
    AmperityError,
    APIStatusError,
    ConfigurationError,
    IncompleteListWarning,
    ResponseValidationError,
    error_for_response,
)
from .fastpath import FastPath
from .fastwire import Received, as_httpx_response
from .operations import CONTROL_PLANE, PROFILE, REALTIME, REGISTRY, OperationInfo, OperationRegistry
from .pagination import ItemIterator, Page, PageIterator, PaginationGuards, ReadPage
from .prefetch import AsyncioPrefetcher, Prefetcher, TaskGroupPrefetcher
from .ratelimit import PerApiLimits, PerOperationLimits, RateLimiter, TokenBucket, Unlimited, choose_limiter
from .refresher import DEFAULT_UNAUTHORIZED_REFRESH_INTERVAL, TokenRefresher
from .resources import OperationMethod
from .retry import RetryPolicy, parse_retry_after
from .secrets import Redactor
from .tokens import StaticToken, TokenEndpointContext, TokenSource
from .transport import AmperityTransport, TransportStats
from .urls import checked_url
from .validation import ResponseValidator

DEFAULT_BASE_URL = "https://app.amperity.com/api"
_HEADERS = {"user-agent": "amperity-async"}
# Documented limits: the control-plane API's rate is per tenant ("10 requests per second"), the
# Profile API's 2000 requests/second across the tenant.
CONTROL_PLANE_RATE = 10.0
PROFILE_RATE = 2000.0
# Amperity documents no rate limit for the Real-time API: the Profile API's is assumed, and the
# bucket halves its rate after a 429 like every other (see TokenBucket.on_rate_limited).
REALTIME_RATE = 2000.0
# Requests granted exactly 1/rate apart reach the server with some jitter, and a strict one-second
# window would then count 11 where the client sent 10. The default buckets therefore also keep any
# 1.01 s window to the limit; their capacity lets them make up for late wake-ups of the event loop
# (measured against the fake tenant's strict window: one 429 in 30 s at a plain 10/s; none here).
_WINDOW_SECONDS = 1.01


def default_bucket(limit: float, clock: Clock | None = None) -> TokenBucket:
    """The bucket a client uses for an API whose documented limit is ``limit`` requests/s."""
    return TokenBucket(
        limit, capacity=max(2.0, limit / 50), clock=clock, window=(int(limit), _WINDOW_SECONDS)
    )


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


class PageModel(Protocol[T_co]):
    """What every generated list response looks like."""

    @property
    def data(self) -> Sequence[T_co]: ...

    @property
    def next_token(self) -> str | None | Unset: ...


# The generator's own functions (``list_segment.asyncio_detailed``): their ``client`` argument is a
# keyword, so only their result can be typed through; a module's typed ``call`` types the arguments.
GeneratedFunction = Callable[..., Awaitable[Response[T | ErrorResponse]]]
GeneratedListFunction = Callable[..., Awaitable[Response[PageModel[T] | ErrorResponse]]]


class TypedOperation(Protocol[P, T_co]):
    """A generated operation module: its ``call(client, ...)`` types ``client.call(module, ...)``."""

    def call(self, client: AmperityClient, /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T_co]: ...


class TypedPages(Protocol[P, T]):
    """A generated list module whose cursor can be followed: its ``pages(client, ...)``."""

    def pages(self, client: AmperityClient, /, *args: P.args, **kwargs: P.kwargs) -> PageIterator[T]: ...


class TypedItems(Protocol[P, T]):
    """A generated list module whose cursor can be followed: its ``items(client, ...)``."""

    def items(self, client: AmperityClient, /, *args: P.args, **kwargs: P.kwargs) -> ItemIterator[T]: ...


def _with_arguments(
    name: str, function: Callable[..., T], args: Sequence[Any], params: Mapping[str, Any]
) -> T:
    """``function(*args, **params)``; a TypeError for arguments it does not take names the operation."""
    try:
        return function(*args, **params)
    except TypeError as exc:
        signature = inspect.signature(function)
        try:
            signature.bind(*args, **params)
        except TypeError:
            takes = [p for p in signature.parameters if p != "client"]
            raise TypeError(f"{name}: {exc}; it takes {', '.join(takes) or 'no arguments'}") from exc
        raise


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. Amperity's APIs set no cookies, and httpx would otherwise
    run every answer through the standard library's cookie jar (a sizeable share of a lookup's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _HttpClient(httpx.AsyncClient):
    """httpx's client, without cookie persistence (see ``_NoCookies``)."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        raise ConfigurationError("the client keeps no cookies: Amperity's APIs set none")


class _AsyncOnly(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise ConfigurationError(
            "amperity-async is an async client: call the generated asyncio()/asyncio_detailed() "
            "functions (the sync ones would bypass tokens, limits and retries)"
        )


def _api_versions(
    registry: OperationRegistry, api_version: str | None, profile_api_version: str | None
) -> dict[str, str]:
    """The version to send per API that has versions: the spec's default unless the caller chose one."""
    versions = {api: registry.default_version(api) for api in registry.versioned_apis()}
    for api, chosen in ((CONTROL_PLANE, api_version), (PROFILE, profile_api_version)):
        if chosen is not None:
            versions[api] = chosen
    for api, version in versions.items():
        if not isinstance(version, str) or not version.strip():
            raise ConfigurationError(
                f"the {api} api_version must be a version date such as {registry.default_version(api)!r} "
                f"(or None for the spec's default), got {version!r}"
            )
    return versions


def _configured(make: Callable[[], T]) -> T:
    """``make()``, with its ValueError for a bad setting reported as a ConfigurationError."""
    try:
        return make()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


class AmperityClient(ResourceView):
    """An async client for one Amperity tenant.

    Use it as an async context manager: ``async with AmperityClient(...) as client``. Every operation
    is a method of an API area (``client.segments.list(limit=5)``, ``client.workflows.run(...)``);
    ``client.call(module, ...)`` is the generic form. Limits given
    as ``rate_limit``/``profile_rate_limit`` may be shared by several clients (one budget); left out
    (None) they are buckets at the documented limits, and ``UNLIMITED`` turns the client-side limit off.

    - ``api_version``/``profile_api_version``: ``None`` sends the version the generated spec was
      built for (``registry.default_version``), so a spec update changes it with no code change.
      The Real-time API has no versions: its requests carry no ``api-version``.
    - ``realtime_base_url``: where the Real-time API's requests go; by default ``base_url`` with
      ``/prof`` in place of its trailing ``/api`` (``https://app.amperity.com/prof``).
      ``realtime_rate_limit``: its own bucket (default 2000/s, an assumption: Amperity documents
      none), so lookups never queue behind a long extraction on the same client.
    - ``timeout``: seconds one attempt may take in all (connect, headers, the whole body);
      ``deadline``: seconds the whole call may take (token, rate-limit waits, retries, the replay
      after a 401); ``max_response_bytes``: the largest (decompressed) body read. Token requests
      get the same timeout and size cap.
    - ``max_retry_after``: the longest ``Retry-After`` waited for; a longer one fails that call with
      ``RateLimitError`` at once. ``unauthorized_refresh_interval``: at most one token renewal per
      this many seconds is caused by 401s.
    - ``fast_path``: on asyncio with the default connections, ``call``/``pages``/``paginate`` send
      over aiohttp without httpx (same tokens, limits, bounds and retries); ``False`` sends every
      request through httpx. A ``transport`` given here always sees every request.
    """

    def __init__(
        self,
        *,
        tenant: str,
        auth: TokenSource | str,
        base_url: str | None = None,
        api_version: str | None = None,
        profile_api_version: str | None = None,
        rate_limit: RateLimiter | Unlimited | None = None,
        profile_rate_limit: RateLimiter | Unlimited | None = None,
        realtime_base_url: str | None = None,
        realtime_rate_limit: RateLimiter | Unlimited | None = None,
        per_operation_limits: bool = False,
        max_retries: int = 5,
        max_retry_after: float = 60.0,
        timeout: float | None = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        token_leeway: float = 60.0,
        unauthorized_refresh_interval: float = DEFAULT_UNAUTHORIZED_REFRESH_INTERVAL,
        prefetch: bool = True,
        pagination_guards: PaginationGuards | None = None,
        validate_responses: bool = True,
        fast_path: bool = True,
        clock: Clock | None = None,
        registry: OperationRegistry = REGISTRY,
    ) -> None:
        if not isinstance(tenant, str) or not tenant.strip():
            raise ConfigurationError(
                "tenant must be the tenant ID (a non-empty string), e.g. 'acme' or 'acme-sb-123'"
            )
        if per_operation_limits and any(
            limit is not None for limit in (rate_limit, profile_rate_limit, realtime_rate_limit)
        ):
            raise ConfigurationError(
                "per_operation_limits creates its own buckets; do not also pass rate_limit"
            )
        retry = _configured(lambda: RetryPolicy(max_retries=max_retries, max_retry_after=max_retry_after))
        bounds = _configured(
            lambda: Bounds(timeout=timeout, deadline=deadline, max_response_bytes=max_response_bytes)
        )
        self.tenant = tenant
        # Like other API clients, an unset base URL may come from the environment (e.g. a sandbox
        # region, or a fake tenant in tests).
        given_url = base_url or os.environ.get("AMPERITY_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = checked_url(given_url, "base_url")
        self.bases = ApiBases.configure(registry, self.base_url, {REALTIME: realtime_base_url})
        self.realtime_base_url = self.bases.url_of(REALTIME)
        self.api_versions = _api_versions(registry, api_version, profile_api_version)
        self.registry = registry
        self.prefetch = prefetch
        self.pagination_guards = pagination_guards or PaginationGuards()
        self.bounds = bounds
        self._clock = clock or SystemClock()
        self.redactor = Redactor()
        rates = {CONTROL_PLANE: CONTROL_PLANE_RATE, PROFILE: PROFILE_RATE, REALTIME: REALTIME_RATE}
        limiter_for: Callable[[OperationInfo | None], RateLimiter | None]
        if per_operation_limits:
            limiter_for = PerOperationLimits(
                lambda api: default_bucket(rates.get(api, CONTROL_PLANE_RATE), self._clock)
            )
        else:
            limiter_for = PerApiLimits(
                {
                    CONTROL_PLANE: choose_limiter(
                        rate_limit,
                        lambda: default_bucket(CONTROL_PLANE_RATE, self._clock),
                        setting="rate_limit",
                    ),
                    PROFILE: choose_limiter(
                        profile_rate_limit,
                        lambda: default_bucket(PROFILE_RATE, self._clock),
                        setting="profile_rate_limit",
                    ),
                    REALTIME: choose_limiter(
                        realtime_rate_limit,
                        lambda: default_bucket(REALTIME_RATE, self._clock),
                        setting="realtime_rate_limit",
                    ),
                }
            )
        inner = (
            transport if transport is not None else default_inner_transport(max_connections=max_connections)
        )
        self._transport = AmperityTransport(
            inner,
            tenant=tenant,
            bases=self.bases,
            api_versions=self.api_versions,
            limiter_for=limiter_for,
            retry=retry,
            bounds=bounds,
            clock=self._clock,
            registry=registry,
            redactor=self.redactor,
        )
        source: TokenSource = StaticToken(auth) if isinstance(auth, str) else auth
        self.refresher = TokenRefresher(
            source,
            context=TokenEndpointContext(
                base_url=self.base_url, tenant=tenant, transport=inner, bounds=bounds, redactor=self.redactor
            ),
            leeway=token_leeway,
            clock=self._clock,
            unauthorized_refresh_interval=unauthorized_refresh_interval,
            redactor=self.redactor,
        )
        call_auth = AmperityAuth(self.refresher, deadline=deadline)
        # The generated functions' URLs carry their API's base path (/api/..., /prof/...): they are
        # resolved against the host, and the transport moves each to its API's configured base URL.
        self._root = str(self.bases.root).rstrip("/")
        self.http: httpx.AsyncClient = _HttpClient(
            base_url=self.bases.root,
            auth=call_auth,
            transport=self._transport,
            timeout=bounds.httpx_timeout(),
            headers=_HEADERS,
        )
        session = aiohttp_session_of(inner) if fast_path else None
        self._fast = (
            None
            if session is None
            else FastPath(
                bases=self.bases, transport=self._transport, auth=call_auth, session=session, headers=_HEADERS
            )
        )
        # Requests carry tokens from the auth flow above; the generated client's own token field
        # is only read by its sync path, which is disabled.
        self.generated = AuthenticatedClient(
            base_url=str(self.bases.root), token="", raise_on_unexpected_status=False
        )
        self.generated.set_async_httpx_client(self.http)
        self.generated.set_httpx_client(httpx.Client(transport=_AsyncOnly()))
        self._validator = ResponseValidator() if validate_responses else None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._prefetcher: Prefetcher | None = None
        # The deadline of calls made within ``within(...)``, per task (None: the client's own).
        self._call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
            "amperity_async_call_deadline", default=None
        )

    def __repr__(self) -> str:
        return (
            f"AmperityClient(tenant={self.tenant!r}, base_url={self.base_url!r}, "
            f"api_versions={self.api_versions!r})"
        )

    @property
    def stats(self) -> TransportStats:
        """Counters of requests, retries and 429s, for progress displays and benchmarks."""
        return self._transport.stats

    # lifetimes

    async def __aenter__(self) -> Self:
        await self.http.__aenter__()
        if sniffio.current_async_library() == "asyncio":
            self._prefetcher = AsyncioPrefetcher()
        else:
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._prefetcher = TaskGroupPrefetcher(self._task_group)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # Prefetches still in flight belong to iterators nobody reads any more.
            if self._prefetcher is not None:
                await self._prefetcher.aclose()
            if self._task_group is not None:
                # The body's own exception is not handed to the task group: it would come back
                # wrapped in an ExceptionGroup, and prefetch tasks never raise.
                await self._task_group.__aexit__(None, None, None)
        finally:
            self._prefetcher = None
            self._task_group = None
            await self.http.aclose()

    async def aclose(self) -> None:
        await self.__aexit__(None, None, None)

    # calls

    def operation(
        self, operation: ModuleType | Callable[..., Any] | Endpoint[..., Any] | str
    ) -> OperationInfo:
        """The metadata of a generated module, one of its functions, its ``ENDPOINT`` or an operation name."""
        if isinstance(operation, Endpoint):
            operation = operation.module
        if isinstance(operation, str):
            info = self.registry.get(operation)
            if info is None:
                known = ", ".join(sorted(op.name for op in self.registry))
                raise ConfigurationError(f"unknown operation {operation!r}; known operations: {known}")
            return info
        return self.registry.for_operation(operation)

    def _module(self, operation: Any) -> tuple[OperationInfo, ModuleType]:
        """The operation's metadata and generated module; anything else raises naming what was given."""
        info = self.operation(operation)
        return info, info.load_module()

    async def _send(
        self,
        info: OperationInfo,
        endpoint: Endpoint[..., Any],
        args: Sequence[Any],
        params: Mapping[str, Any],
    ) -> Received:
        try:
            kwargs = endpoint.build_request(*args, **params)
        except TypeError as exc:
            takes = ", ".join(endpoint.argument_names()) or "no arguments"
            raise TypeError(f"{endpoint.name}: {exc}; it takes {takes}") from exc
        deadline = self._call_deadline.get()
        fast = self._fast
        response: Received
        try:
            if fast is not None and fast.takes(kwargs):
                response = await fast.send(info, kwargs, deadline)
            else:
                request = self._request(kwargs)
                if deadline is not None:
                    # The deadline of ``within``, instead of the client's: the auth flow and the
                    # transport find it on the request.
                    CallContext.start(deadline, self._clock).attach(request)
                response = await self.http.send(request)
        except AmperityError as exc:
            self.redactor.scrub_error(exc)
            raise
        status = response.status_code
        if not 200 <= status < 300:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock.time())
            error = error_for_response(
                as_httpx_response(response), scrub=self.redactor.scrub, retry_after=retry_after
            )
            raise error
        return response

    def _request(self, kwargs: Mapping[str, Any]) -> httpx.Request:
        """The request of a generated function's arguments, its URL made in one piece: httpx would
        parse it three times over (joining the base URL, then merging the query)."""
        params = kwargs.get("params")
        query = str(httpx.QueryParams(params)) if params else ""
        url = httpx.URL(self._root + kwargs["url"] + ("?" + query if query else ""))
        rest = {key: value for key, value in kwargs.items() if key not in ("url", "params")}
        return self.http.build_request(url=url, **rest)

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Calls made in this block (by this task) take at most ``seconds`` each, token, rate-limit
        waits and retries included, instead of the client's ``deadline``; past it they raise
        ``APITimeoutError``. For a lookup while a page waits: ``with client.within(0.25): ...``."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds > 0)
        ):
            raise ConfigurationError(f"within() takes a positive number of seconds, got {seconds!r}")
        token = self._call_deadline.set(float(seconds))
        try:
            yield
        finally:
            self._call_deadline.reset(token)

    def _decode(self, info: OperationInfo, response: Received) -> Any:
        request_id = response.headers.get("x-request-id")
        try:
            if self._validator is not None:
                return self._validator.decode(info, response.content, request_id=request_id)
            try:
                return json.loads(response.content)
            except (ValueError, RecursionError) as exc:
                raise ResponseValidationError(
                    operation=info.operation_id,
                    field="(body)",
                    detail=f"not JSON: {exc}",
                    request_id=request_id,
                ) from None
        except AmperityError as exc:
            self.redactor.scrub_error(exc)
            raise

    async def _call_endpoint(
        self, endpoint: Endpoint[..., T], args: Sequence[Any], params: Mapping[str, Any]
    ) -> T:
        info = self.operation(endpoint)
        response = await self._send(info, endpoint, args, params)
        if not endpoint.has_body:
            # No body to parse: the status is the answer (send-event: 202 published, 204 dropped).
            answer = EmptyAnswer(response.status_code, response.headers.get("x-request-id"))
            empty: T = answer  # type: ignore[assignment]
            return empty
        data = self._decode(info, response)
        if info.returns_list and not info.paginated:
            _warn_if_incomplete(info, data)
        try:
            return endpoint.parse(data)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            scrub = self.redactor.scrub
            field = scrub(str(exc.args[0])) if isinstance(exc, KeyError) and exc.args else "(body)"
            raise ResponseValidationError(
                operation=info.operation_id,
                field=field,
                detail=scrub(f"{type(exc).__name__}: {exc}"),
                request_id=response.headers.get("x-request-id"),
            ) from self.redactor.safe_cause(exc)

    @overload
    async def call(self, operation: TypedOperation[P, T], /, *args: P.args, **params: P.kwargs) -> T: ...

    @overload
    async def call(self, operation: Endpoint[P, T], /, *args: P.args, **params: P.kwargs) -> T: ...

    @overload
    async def call(
        self,
        operation: Callable[Concatenate[AmperityClient, P], Awaitable[T]],
        /,
        *args: P.args,
        **params: P.kwargs,
    ) -> T: ...

    @overload
    async def call(self, operation: GeneratedFunction[T], /, *args: Any, **params: Any) -> T: ...

    @overload
    async def call(self, operation: str, /, *args: Any, **params: Any) -> Any: ...

    async def call(self, operation: object, /, *args: Any, **params: Any) -> Any:
        """Call an operation; return its parsed 2xx model or raise a typed error.

        ``operation`` is a generated module (``amperity_async.api.segments.list_segment``), one of
        its functions, its ``ENDPOINT`` or its name (``"list_segment"``, ``"list-segment"``; typed
        as returning Any). The arguments are those of the module's typed ``call``: path parameters
        positionally, the rest by keyword; enum arguments also take their values.
        """
        if isinstance(operation, Endpoint):
            return await self._call_endpoint(operation, args, params)
        info, module = self._module(operation)
        typed: Callable[..., Awaitable[Any]] = module.call
        return await _with_arguments(info.name, typed, (self, *args), params)

    @overload
    async def find(
        self, operation: TypedOperation[P, T], /, *args: P.args, **params: P.kwargs
    ) -> T | None: ...

    @overload
    async def find(self, operation: Endpoint[P, T], /, *args: P.args, **params: P.kwargs) -> T | None: ...

    @overload
    async def find(self, operation: str, /, *args: Any, **params: Any) -> Any: ...

    @overload
    async def find(
        self, operation: Callable[P, Awaitable[T]], /, *args: P.args, **params: P.kwargs
    ) -> T | None: ...

    async def find(self, operation: object, /, *args: Any, **params: Any) -> Any:
        """Like ``call``, but ``None`` when the server answers the operation's "nothing matched"
        status (``OperationInfo.no_match_status``, from the spec: a Real-time lookup's 404).

        ``operation`` is what ``call`` takes, or a method of the resource view
        (``client.find(client.realtime.lookup, "pc-customers", keys=...)``). For an operation
        without such a status it is a ConfigurationError; ``call`` raises ``NotFoundError`` for a
        404 instead.
        """
        method = operation if isinstance(operation, OperationMethod) else None
        described = type(method).endpoint.module if method is not None else operation
        info, _ = self._module(described.module if isinstance(described, Endpoint) else described)
        if info.no_match_status is None:
            raise ConfigurationError(
                f'{info.name} has no status that means "nothing matched"; use client.call({info.name}, ...)'
            )
        try:
            if method is not None:
                return await method(*args, **params)  # type: ignore[operator]
            return await self.call(operation, *args, **params)  # type: ignore[call-overload]
        except APIStatusError as exc:
            if exc.status_code == info.no_match_status:
                return None
            raise

    def _pageable(self, operation: object, params: Mapping[str, Any]) -> tuple[OperationInfo, ModuleType]:
        """The list operation to page through, refused with the reason when it cannot be paged."""
        info, module = self._module(operation)
        if "next_token" in params:
            raise ConfigurationError("pass start_token=... to resume from a cursor, not next_token")
        if info.returns_list and not info.paginated:
            window = f" (at most {info.max_window_days} days each)" if info.max_window_days else ""
            raise ConfigurationError(
                f"{info.name} answers with one page and no cursor to follow: call it with "
                f"client.call({info.name}, ...), one request per time window{window}"
            )
        if not info.paginated:
            raise ConfigurationError(
                f"{info.name} is not a list operation; use client.call({info.name}, ...)"
            )
        return info, module

    @overload
    def pages(self, operation: TypedPages[P, T], /, *args: P.args, **params: P.kwargs) -> PageIterator[T]: ...

    @overload
    def pages(
        self,
        operation: ListEndpoint[..., Any, T] | GeneratedListFunction[T],
        /,
        *args: Any,
        start_token: str | None = None,
        max_pages: int | None = None,
        prefetch: bool | None = None,
        pagination_guards: PaginationGuards | None = None,
        **params: Any,
    ) -> PageIterator[T]: ...

    @overload
    def pages(
        self,
        operation: str | Endpoint[..., Any],
        /,
        *args: Any,
        start_token: str | None = None,
        max_pages: int | None = None,
        prefetch: bool | None = None,
        pagination_guards: PaginationGuards | None = None,
        **params: Any,
    ) -> PageIterator[Any]: ...

    def pages(self, operation: object, /, *args: Any, **params: Any) -> PageIterator[Any]:
        """Whole pages of a list operation: ``async for page in client.pages(list_segment, limit=100)``.

        ``start_token`` resumes from a cursor; ``max_pages`` stops after that many pages
        (``next_token`` is then where the list goes on); ``prefetch`` overrides the client's;
        ``pagination_guards`` replaces the client's for this call.
        """
        if isinstance(operation, Endpoint):
            options = {name: params.pop(name) for name in _PAGE_OPTIONS if name in params}
            return self._pages_endpoint(operation, args, params, **options)
        info, module = self._pageable(operation, params)
        typed: Callable[..., PageIterator[Any]] | None = getattr(module, "pages", None)
        if typed is None:  # a list whose items are not models has no typed form: the descriptor serves
            return self.pages(module.ENDPOINT, *args, **params)
        return _with_arguments(info.name, typed, (self, *args), params)

    def _pages_endpoint(
        self,
        endpoint: Endpoint[..., Any],
        args: Sequence[Any],
        params: Mapping[str, Any],
        *,
        start_token: str | None = None,
        max_pages: int | None = None,
        prefetch: bool | None = None,
        pagination_guards: PaginationGuards | None = None,
    ) -> PageIterator[Any]:
        info, _ = self._pageable(endpoint, params)
        convert: Callable[[Any], Any] = endpoint.item if isinstance(endpoint, ListEndpoint) else _as_is

        def read(response: Received, token: str | None) -> Page[Any]:
            body = self._decode(info, response)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ResponseValidationError(
                    operation=info.operation_id,
                    field="data",
                    detail="a list response must carry a `data` array",
                    request_id=response.headers.get("x-request-id"),
                )
            next_token = body.get("next_token")
            total = body.get("total")
            return Page(
                operation=info.operation_id,
                raw=body["data"],
                next_token=next_token if isinstance(next_token, str) and next_token else None,
                total=total if isinstance(total, int) else None,
                token=token,
                request_id=response.headers.get("x-request-id"),
                convert=convert,
            )

        async def fetch(token: str | None) -> ReadPage[Any]:
            page_params = dict(params, next_token=token) if token else params
            response = await self._send(info, endpoint, args, page_params)
            return functools.partial(read, response, token)

        use_prefetch = self.prefetch if prefetch is None else prefetch
        return PageIterator(
            info.operation_id,
            fetch,
            start_token=start_token,
            max_pages=max_pages,
            prefetcher=self._prefetcher if use_prefetch else None,
            item_key=info.item_key,
            guards=pagination_guards or self.pagination_guards,
        )

    @overload
    def paginate(
        self, operation: TypedItems[P, T], /, *args: P.args, **params: P.kwargs
    ) -> ItemIterator[T]: ...

    @overload
    def paginate(
        self,
        operation: ListEndpoint[..., Any, T] | GeneratedListFunction[T],
        /,
        *args: Any,
        max_items: int | None = None,
        start_token: str | None = None,
        max_pages: int | None = None,
        prefetch: bool | None = None,
        pagination_guards: PaginationGuards | None = None,
        **params: Any,
    ) -> ItemIterator[T]: ...

    @overload
    def paginate(
        self,
        operation: str | Endpoint[..., Any],
        /,
        *args: Any,
        max_items: int | None = None,
        start_token: str | None = None,
        max_pages: int | None = None,
        prefetch: bool | None = None,
        pagination_guards: PaginationGuards | None = None,
        **params: Any,
    ) -> ItemIterator[Any]: ...

    def paginate(self, operation: object, /, *args: Any, **params: Any) -> ItemIterator[Any]:
        """Items across pages: ``async for segment in client.paginate(list_segment, limit=100)``.

        ``max_items`` stops after that many items; the other options are those of ``pages``.
        """
        if isinstance(operation, Endpoint):
            max_items = params.pop("max_items", None)
            return ItemIterator(self.pages(operation, *args, **params), max_items=max_items)
        info, module = self._pageable(operation, params)
        typed: Callable[..., ItemIterator[Any]] | None = getattr(module, "items", None)
        if typed is None:
            return self.paginate(module.ENDPOINT, *args, **params)
        return _with_arguments(info.name, typed, (self, *args), params)


_PAGE_OPTIONS = ("start_token", "max_pages", "prefetch", "pagination_guards")


def _as_is(item: Any) -> Any:
    return item


def _warn_if_incomplete(info: OperationInfo, body: Any) -> None:
    """A one-page list whose ``total`` is more than its page holds lost the rest: say so."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return
    total, shown = body.get("total"), len(body["data"])
    if isinstance(total, int) and not isinstance(total, bool) and total > shown:
        warnings.warn(IncompleteListWarning(info.name, shown, total), stacklevel=4)
