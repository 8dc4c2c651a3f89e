"""The public names of the hand-written layer, re-exported by ``amperity_async``."""

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
    "AmperityAuth",
    "ClientCredentials",
    "IssuerToken",
    "Secret",
    "StaticToken",
    "Token",
    "TokenEndpointContext",
    "TokenRefresher",
    "TokenSource",
]
