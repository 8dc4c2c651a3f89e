"""How a worker reaches the tenant: everything but the secrets, which each worker reads itself.

A ``Connection`` travels inside every shard spec, so it is pickled, sent through a scheduler and
possibly shown in its dashboard. It therefore holds no credential: ``credentials`` is a function
the worker calls to get its ``TokenSource``. The default, ``credentials_from_env``, reads
``AMPERITY_CLIENT_ID``/``AMPERITY_CLIENT_SECRET`` or ``AMPERITY_TOKEN`` from the worker's own
environment, so a secret never leaves the machines it was given to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import attrs

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import CONTROL_PLANE, PROFILE, REGISTRY
from ..ratelimit import RateLimiter, Unlimited
from ..tokens import ClientCredentials, StaticToken, TokenSource

CLIENT_ID_VARIABLE = "AMPERITY_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "AMPERITY_CLIENT_SECRET"
TOKEN_VARIABLE = "AMPERITY_TOKEN"

Limiter = RateLimiter | Unlimited | None
"""One API's limiter as ``AmperityClient`` takes it: a limiter, ``UNLIMITED``, or None (default bucket)."""


def credentials_from_env(environ: Mapping[str, str] | None = None) -> TokenSource:
    """Client credentials, or else a fixed token, from the environment of the process calling it."""
    env = os.environ if environ is None else environ
    client_id, client_secret = env.get(CLIENT_ID_VARIABLE), env.get(CLIENT_SECRET_VARIABLE)
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret)
    if client_id or client_secret:
        raise ConfigurationError(
            f"client credentials need both {CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE} "
            f"in this worker's environment"
        )
    token = env.get(TOKEN_VARIABLE)
    if token:
        return StaticToken(token)
    raise ConfigurationError(
        f"no credentials in this worker's environment: set {CLIENT_ID_VARIABLE} and "
        f"{CLIENT_SECRET_VARIABLE}, or {TOKEN_VARIABLE}"
    )


def _api_versions(value: Mapping[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Every API's version: those given, the operation index's default for the others."""
    given = dict(value)
    return tuple(
        sorted(
            {api: given.get(api) or REGISTRY.default_version(api) for api in (CONTROL_PLANE, PROFILE)}.items()
        )
    )


@attrs.frozen
class Connection:
    """Tenant, base URL and api versions of an extraction, and how a worker gets its credentials."""

    tenant: str
    base_url: str
    api_versions: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_api_versions)
    max_retries: int = 5
    credentials: Callable[[], TokenSource] = credentials_from_env
    """Called on the worker. It is pickled with the spec: it must fetch secrets, never carry them."""

    @classmethod
    def of(
        cls,
        client: AmperityClient,
        *,
        max_retries: int = 5,
        credentials: Callable[[], TokenSource] = credentials_from_env,
    ) -> Connection:
        """The connection of an existing client (its tenant, base URL and api versions)."""
        return cls(client.tenant, client.base_url, dict(client.api_versions), max_retries, credentials)

    def client(self, limiters: Mapping[str, Limiter] | None = None) -> AmperityClient:
        """A client for this connection; ``limiters`` per API (missing: the documented default)."""
        chosen, versions = dict(limiters or {}), dict(self.api_versions)
        return AmperityClient(
            tenant=self.tenant,
            auth=self.credentials(),
            base_url=self.base_url,
            api_version=versions[CONTROL_PLANE],
            profile_api_version=versions[PROFILE],
            rate_limit=chosen.get(CONTROL_PLANE),
            profile_rate_limit=chosen.get(PROFILE),
            max_retries=self.max_retries,
        )

    def difference(self, client: AmperityClient) -> str | None:
        """How ``client`` differs from this connection, in words; None when it is one of its clients."""
        if (client.tenant, client.base_url) != (self.tenant, self.base_url):
            return (
                f"tenant {client.tenant!r} at {client.base_url}, "
                f"not tenant {self.tenant!r} at {self.base_url}"
            )
        if dict(client.api_versions) != dict(self.api_versions):
            return f"api versions {dict(client.api_versions)}, not {dict(self.api_versions)}"
        return None
