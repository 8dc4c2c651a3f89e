"""The public names of the hand-written layer, re-exported by ``amperity_async``."""

from typing import TYPE_CHECKING

from .client import AmperityClient
from .errors import (
    AmperityDeprecationWarning,
    AmperityError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    TokenEndpointError,
    TokenError,
    TokenExpiredError,
    UnstableOperationError,
)
from .pagination import ItemIterator, Page, PageIterator, PaginationGuards
from .clock import Clock, ManualClock, SystemClock
from .ratelimit import UNLIMITED, PerApiLimits, PerOperationLimits, RateLimiter, TokenBucket, Unlimited
from .transport import AmperityTransport, RequestCounts, RetryPolicy, TransportStats, default_inner_transport
from .auth import (
    AmperityAuth,
    ClientCredentials,
    IssuerToken,
    Secret,
    StaticToken,
    Token,
    TokenEndpointContext,
    TokenRefresher,
    TokenSource,
)

__all__: list[str] = [
    "AmperityClient",
    "AmperityDeprecationWarning",
    "AmperityError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "TokenEndpointError",
    "TokenError",
    "TokenExpiredError",
    "UnstableOperationError",
    "ItemIterator",
    "Page",
    "PageIterator",
    "PaginationGuards",
    "AmperityAuth",
    "ClientCredentials",
    "IssuerToken",
    "Secret",
    "StaticToken",
    "Token",
    "TokenEndpointContext",
    "TokenRefresher",
    "TokenSource",
    "Clock",
    "ManualClock",
    "SystemClock",
    "PerApiLimits",
    "PerOperationLimits",
    "RateLimiter",
    "TokenBucket",
    "UNLIMITED",
    "Unlimited",
    "AmperityTransport",
    "RequestCounts",
    "RetryPolicy",
    "TransportStats",
    "default_inner_transport",
]
# FakeTenant, FakeTenantConfig and RedisTokenBucket are importable by name (see __getattr__) but
# stay out of __all__: the package star-imports this module, which would import them eagerly.
if TYPE_CHECKING:
    # Type checkers see the real class (not __getattr__'s object); at run time redis stays unimported
    # until the name is used.
    from .redis_bucket import RedisTokenBucket

    __all__ += ["RedisTokenBucket"]


def __getattr__(name: str) -> object:
    # Names from optional extras are imported on first use, so that importing the package neither
    # needs nor pays for them (the generated package forwards its own __getattr__ here).
    if name == "RedisTokenBucket":
        try:
            from .redis_bucket import RedisTokenBucket
        except ImportError as exc:
            raise ImportError(
                f"RedisTokenBucket needs the optional extra: pip install 'amperity-async[redis]' ({exc})"
            ) from exc
        return RedisTokenBucket
    if name in ("FakeTenant", "FakeTenantConfig"):
        # The fake tenant (aiohttp server, spec loading) is imported only by code that uses it.
        from amperity_async import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
