"""The public names of the hand-written layer, re-exported by ``amperity_async``."""

from .answers import EmptyAnswer
from .auth import AmperityAuth
from .calls import Bounds
from .client import AmperityClient
from .clock import Clock, ManualClock, SystemClock
from .connections import default_inner_transport
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
    IncompleteListWarning,
    InternalServerError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimiterFallbackWarning,
    RateLimitError,
    RateLimiterUnavailableError,
    RequestTooLargeError,
    ResponseTooLargeError,
    ResponseValidationError,
    TokenCredentialsRejectedError,
    TokenEndpointError,
    TokenEndpointTimeoutError,
    TokenEndpointUnavailableError,
    TokenError,
    TokenExpiredError,
    UnstableOperationError,
)
from .pagination import ItemIterator, Page, PageIterator, PaginationGuards
from .ratelimit import UNLIMITED, PerApiLimits, PerOperationLimits, RateLimiter, TokenBucket, Unlimited
from .refresher import TokenRefresher
from .retry import RetryPolicy
from .secrets import Redactor, Secret
from .tokens import ClientCredentials, IssuerToken, StaticToken, Token, TokenEndpointContext, TokenSource
from .transport import AmperityTransport, RequestCounts, TransportStats

__all__: list[str] = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmperityAuth",
    "AmperityClient",
    "AmperityDeprecationWarning",
    "AmperityError",
    "AmperityTransport",
    "AuthenticationError",
    "BadRequestError",
    "Bounds",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "EmptyAnswer",
    "IncompleteListWarning",
    "InternalServerError",
    "IssuerToken",
    "ItemIterator",
    "ManualClock",
    "NotFoundError",
    "Page",
    "PageIterator",
    "PaginationError",
    "PaginationGuards",
    "PerApiLimits",
    "PerOperationLimits",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterFallbackWarning",
    "RateLimiterUnavailableError",
    "Redactor",
    "RequestCounts",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryPolicy",
    "Secret",
    "StaticToken",
    "SystemClock",
    "Token",
    "TokenBucket",
    "TokenCredentialsRejectedError",
    "TokenEndpointContext",
    "TokenEndpointError",
    "TokenEndpointTimeoutError",
    "TokenEndpointUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "TokenRefresher",
    "TokenSource",
    "TransportStats",
    "UNLIMITED",
    "Unlimited",
    "UnstableOperationError",
    "default_inner_transport",
]
# FakeTenant, FakeTenantConfig and RedisTokenBucket are importable by name (see __getattr__) but
# stay out of __all__: the package star-imports this module, which would import them eagerly. Type
# checkers see the real classes through the package's TYPE_CHECKING imports.


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
