"""The client a command uses, from its flags and the environment (flags win).

Environment: ``AMPERITY_TENANT``, ``AMPERITY_BASE_URL``, ``AMPERITY_CLIENT_ID``,
``AMPERITY_CLIENT_SECRET``, ``AMPERITY_TOKEN``, ``AMPERITY_REDIS_URL``. The api versions default to
the ones the operation index names as each API's default, so a new spec version needs no edit here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import urlsplit

from ..tokens import ClientCredentials, StaticToken, TokenSource
from ..client import DEFAULT_BASE_URL, AmperityClient
from ..operations import CONTROL_PLANE, PROFILE, REGISTRY
from .failures import UsageError

SECRET_VARIABLES = ("AMPERITY_CLIENT_SECRET", "AMPERITY_TOKEN")


def _env(args: argparse.Namespace, attr: str, var: str) -> str | None:
    value = getattr(args, attr, None)
    return value if value else os.environ.get(var) or None


def secrets_of(args: argparse.Namespace | None) -> list[str | None]:
    """Every secret the command may hold, for scrubbing what it prints."""
    secrets: list[str | None] = [os.environ.get(var) for var in SECRET_VARIABLES]
    if args is not None:
        secrets += [getattr(args, "client_secret", None), getattr(args, "token", None)]
    for url in (os.environ.get("AMPERITY_REDIS_URL"), getattr(args, "redis_url", None)):
        try:
            secrets.append(urlsplit(url).password if url else None)
        except ValueError:
            pass
    return secrets


def auth_from(args: argparse.Namespace) -> TokenSource:
    client_id = _env(args, "client_id", "AMPERITY_CLIENT_ID")
    client_secret = _env(args, "client_secret", "AMPERITY_CLIENT_SECRET")
    token = _env(args, "token", "AMPERITY_TOKEN")
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret)
    if client_id or client_secret:
        raise UsageError("client credentials need both --client-id and --client-secret (or AMPERITY_CLIENT_ID/_SECRET)")
    if token:
        return StaticToken(token)
    raise UsageError(
        "no credentials: pass --client-id/--client-secret or --token "
        "(or set AMPERITY_CLIENT_ID/AMPERITY_CLIENT_SECRET or AMPERITY_TOKEN)"
    )


def client_from(args: argparse.Namespace) -> AmperityClient:
    tenant = _env(args, "tenant", "AMPERITY_TENANT")
    if not tenant:
        raise UsageError("no tenant: pass --tenant or set AMPERITY_TENANT")
    options: dict[str, Any] = {}
    redis_url = _env(args, "redis_url", "AMPERITY_REDIS_URL")
    if redis_url:
        options.update(_redis_limits(redis_url, tenant, args))
    return AmperityClient(
        tenant=tenant,
        auth=auth_from(args),
        base_url=_env(args, "base_url", "AMPERITY_BASE_URL") or DEFAULT_BASE_URL,
        api_version=args.api_version or REGISTRY.default_version(CONTROL_PLANE),
        profile_api_version=args.profile_api_version or REGISTRY.default_version(PROFILE),
        max_retries=args.max_retries,
        **options,
    )


def _redis_limits(url: str, tenant: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        from ..redis_bucket import RedisTokenBucket
    except ImportError as exc:
        raise UsageError(f"--redis-url needs the redis extra: pip install 'amperity-async[redis]' ({exc})") from exc
    # The shared bucket has no window guard, so rate + capacity stays within each documented limit
    # (10/s, 2000/s): a strict one-second server window never sees one request too many.
    common = {"tenant": tenant, "expected_workers": args.expected_workers, "on_unavailable": args.redis_unavailable}
    return {
        "rate_limit": RedisTokenBucket(url, api=CONTROL_PLANE, rate=9.0, capacity=1, **common),
        "profile_rate_limit": RedisTokenBucket(url, api=PROFILE, rate=1950.0, capacity=50, **common),
    }
