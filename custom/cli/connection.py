"""The client a command uses, and the budget it draws on, from its flags and the environment (flags win).

Environment: ``AMPERITY_TENANT``, ``AMPERITY_BASE_URL``, ``AMPERITY_CLIENT_ID``,
``AMPERITY_CLIENT_SECRET``, ``AMPERITY_TOKEN``, ``AMPERITY_REDIS_URL``, ``AMPERITY_PARENT_TENANT``,
``AMPERITY_CONTROL_PLANE_RATE``, ``AMPERITY_PROFILE_RATE``. The api versions default to the ones
the operation index names as each API's default, so a new spec version needs no edit here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import attrs

from ..client import DEFAULT_BASE_URL, AmperityClient
from ..extract import Budget, BudgetServer, OwnBudget, Rates, RedisBudget, parse_rate
from ..extract.budgets import REDIS_URL_VARIABLE, RateSetting
from ..extract.connection import CLIENT_ID_VARIABLE, CLIENT_SECRET_VARIABLE, TOKEN_VARIABLE, Limiter
from ..operations import CONTROL_PLANE, PROFILE, REGISTRY
from ..ratelimit import UNLIMITED
from ..tokens import ClientCredentials, StaticToken, TokenSource
from .failures import UsageError

SECRET_VARIABLES = ("AMPERITY_CLIENT_SECRET", "AMPERITY_TOKEN")
RATE_SETTINGS = {
    CONTROL_PLANE: ("control_plane_rate", "--control-plane-rate", "AMPERITY_CONTROL_PLANE_RATE"),
    PROFILE: ("profile_rate", "--profile-rate", "AMPERITY_PROFILE_RATE"),
}


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
        raise UsageError(
            "client credentials need both --client-id and --client-secret (or AMPERITY_CLIENT_ID/_SECRET)"
        )
    if token:
        return StaticToken(token)
    raise UsageError(
        "no credentials: pass --client-id/--client-secret or --token "
        "(or set AMPERITY_CLIENT_ID/AMPERITY_CLIENT_SECRET or AMPERITY_TOKEN)"
    )


def rates_from(args: argparse.Namespace) -> Rates:
    """Each API's rate: ``--control-plane-rate``/``--profile-rate`` or their variables, else the
    documented limit."""
    chosen: dict[str, RateSetting] = {}
    for api, (attr, flag, variable) in RATE_SETTINGS.items():
        given = getattr(args, attr, None)
        text = given or os.environ.get(variable)
        chosen[api] = parse_rate(text, flag if given else variable) if text else None
    return Rates(control_plane=chosen[CONTROL_PLANE], profile=chosen[PROFILE])


def budget_from(args: argparse.Namespace) -> OwnBudget | RedisBudget:
    """The command's budget in this process: Redis when a URL is given, else its own buckets."""
    rates = rates_from(args)
    parent = _env(args, "parent_tenant", "AMPERITY_PARENT_TENANT")
    redis_url = _env(args, "redis_url", "AMPERITY_REDIS_URL")
    if not redis_url:
        if getattr(args, "parent_tenant", None):
            warnings.warn(
                "--parent-tenant keys the budget shared through Redis; without --redis-url this run's "
                "budget is its own",
                UserWarning,
                stacklevel=1,
            )
        return OwnBudget(rates)
    try:
        import redis  # noqa: F401 - only to say what is missing before anything starts
    except ImportError as exc:
        raise UsageError(
            f"--redis-url needs the redis extra: pip install 'amperity-async[redis]' ({exc})"
        ) from exc
    return RedisBudget(
        rates,
        url=redis_url,
        parent_tenant=parent,
        expected_workers=args.expected_workers,
        on_unavailable=args.redis_unavailable,
    )


def client_from(args: argparse.Namespace, limiters: Mapping[str, Limiter] | None = None) -> AmperityClient:
    """The command's client; ``limiters`` per API (missing: the client's default bucket)."""
    chosen = limiters or {}
    return AmperityClient(
        tenant=tenant_from(args),
        auth=auth_from(args),
        base_url=_env(args, "base_url", "AMPERITY_BASE_URL") or DEFAULT_BASE_URL,
        api_version=args.api_version or REGISTRY.default_version(CONTROL_PLANE),
        profile_api_version=args.profile_api_version or REGISTRY.default_version(PROFILE),
        max_retries=args.max_retries,
        rate_limit=chosen.get(CONTROL_PLANE),
        profile_rate_limit=chosen.get(PROFILE),
    )


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace, budget: Budget) -> AsyncIterator[AmperityClient]:
    """The command's client, limited by ``budget`` (opened for the client's lifetime)."""
    tenant = tenant_from(args)
    auth_from(args)  # missing credentials fail before the budget is opened
    async with budget.limiters(tenant) as limiters, client_from(args, limiters) as client:
        yield client


def tenant_from(args: argparse.Namespace) -> str:
    tenant = _env(args, "tenant", "AMPERITY_TENANT")
    if not tenant:
        raise UsageError("no tenant: pass --tenant or set AMPERITY_TENANT")
    return tenant


@contextlib.asynccontextmanager
async def worker_budgets(args: argparse.Namespace) -> AsyncIterator[tuple[Budget, Budget]]:
    """The budget of this process and the one its worker processes open: one budget either way.

    With Redis both use it (the workers find the URL in their environment); otherwise this
    process serves a local budget to all of them, unless every API is unlimited."""
    own = budget_from(args)
    if isinstance(own, RedisBudget):
        yield own, attrs.evolve(own, url=None)
        return
    if all(own.rates.limit(api) is UNLIMITED for api in (CONTROL_PLANE, PROFILE)):
        yield own, own
        return
    async with BudgetServer(own.rates) as server:
        yield server.budget, server.budget


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of the command's worker processes: this one's, with the credentials and
    the Redis URL the command was given (flags included), which is where workers read them."""
    env = dict(os.environ)
    for attr, variable in (
        ("client_id", CLIENT_ID_VARIABLE),
        ("client_secret", CLIENT_SECRET_VARIABLE),
        ("token", TOKEN_VARIABLE),
        ("redis_url", REDIS_URL_VARIABLE),
    ):
        value = _env(args, attr, variable)
        if value:
            env[variable] = value
    return env
