"""The CLI's rate flags and budgets: documented limits by default, raised limits, 'unlimited',
Redis budgets through ``for_api`` keyed by tenant (and, for the Profile API, by the parent tenant),
and budgets that travel to workers without a secret."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import anyio
import pytest
from extract_support import cli_env, run_cli
from redis_server import RedisServer

from amperity_async.custom.cli.connection import budget_from, rates_from, worker_budgets, worker_env
from amperity_async.custom.cli.parser import build_parser
from amperity_async.custom.errors import ConfigurationError
from amperity_async.custom.extract import LocalBudget, OwnBudget, Rates, RedisBudget
from amperity_async.custom.operations import CONTROL_PLANE, PROFILE
from amperity_async.custom.ratelimit import UNLIMITED, TokenBucket
from amperity_async.custom.redis_bucket import RedisTokenBucket


def parse(*flags: str) -> Any:
    return build_parser().parse_args(
        ["extract", "list_segment", "--tenant", "acme-sb-1", "--token", "t", *flags]
    )


@pytest.fixture(autouse=True)
def _no_rate_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AMPERITY_CONTROL_PLANE_RATE",
        "AMPERITY_PROFILE_RATE",
        "AMPERITY_REDIS_URL",
        "AMPERITY_PARENT_TENANT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_rates_default_to_the_documented_limits() -> None:
    rates = rates_from(parse())
    assert rates == Rates() and rates.limit(CONTROL_PLANE) == 10 and rates.limit(PROFILE) == 2000


def test_rate_flags_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPERITY_CONTROL_PLANE_RATE", "25")
    monkeypatch.setenv("AMPERITY_PROFILE_RATE", "unlimited")
    assert rates_from(parse()) == Rates(control_plane=25.0, profile=UNLIMITED)
    assert rates_from(parse("--control-plane-rate", "40", "--profile-rate", "3500")) == Rates(40.0, 3500.0)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "fast", ""])
def test_a_rate_that_is_not_one_is_refused_by_name(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--profile-rate"):
        rates_from(parse("--profile-rate", text or " "))


@pytest.mark.anyio
async def test_own_budget_gives_the_client_what_the_rates_say() -> None:
    async with OwnBudget(Rates(control_plane=40, profile=UNLIMITED)).limiters("acme") as limiters:
        bucket = limiters[CONTROL_PLANE]
        assert (
            isinstance(bucket, TokenBucket)
            and bucket.rate == 40
            and bucket.window == (40, pytest.approx(1.01))
        )
        assert limiters[PROFILE] is UNLIMITED
    async with OwnBudget().limiters("acme") as limiters:
        assert limiters == {CONTROL_PLANE: None, PROFILE: None}  # the client's default buckets


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_redis_budgets_use_for_api_and_the_parent_tenant_keys_the_profile_budget() -> None:
    redis = RedisServer()
    redis.start()
    try:
        budget = budget_from(
            parse("--redis-url", redis.url, "--parent-tenant", "acme", "--control-plane-rate", "25")
        )
        assert isinstance(budget, RedisBudget)
        async with budget.limiters("acme-sb-1") as limiters:
            profile, control = limiters[PROFILE], limiters[CONTROL_PLANE]
            assert isinstance(profile, RedisTokenBucket) and isinstance(control, RedisTokenBucket)
            assert profile.rate == 2000 and profile.budget_owner == "acme"  # the sandbox draws on acme's
            assert control.rate == 25 and control.budget_owner == "acme-sb-1"  # its own, raised
            await profile.acquire()
            await control.acquire()
        unlimited = budget_from(parse("--redis-url", redis.url, "--profile-rate", "unlimited"))
        async with unlimited.limiters("acme") as limiters:
            assert limiters[PROFILE] is UNLIMITED
    finally:
        redis.stop()


def test_parent_tenant_without_redis_warns_that_it_changes_nothing() -> None:
    with pytest.warns(UserWarning, match="--parent-tenant"):
        assert isinstance(budget_from(parse("--parent-tenant", "acme")), OwnBudget)


def test_a_redis_budget_with_a_password_is_not_sent_to_workers() -> None:
    budget = RedisBudget(Rates(), url="redis://:hunter2hunter2@127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="AMPERITY_REDIS_URL"):
        pickle.dumps(budget)
    assert (
        pickle.loads(pickle.dumps(RedisBudget(Rates(), url=None, parent_tenant="acme"))).parent_tenant
        == "acme"
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_workers_get_the_budget_and_their_credentials_from_the_command() -> None:
    args = parse("--client-id", "id-1", "--client-secret", "s3cret-s3cret", "--control-plane-rate", "20")
    async with worker_budgets(args) as (own, theirs):
        assert own == theirs and isinstance(theirs, LocalBudget)
        assert b"s3cret" not in pickle.dumps(theirs)
    env = worker_env(args)
    assert env["AMPERITY_CLIENT_ID"] == "id-1" and env["AMPERITY_CLIENT_SECRET"] == "s3cret-s3cret"
    redis_args = parse("--redis-url", "redis://:pw-pw-pw-pw@127.0.0.1:1/0")
    async with worker_budgets(redis_args) as (own, theirs):
        assert isinstance(theirs, RedisBudget) and theirs.url is None  # read from their environment
        assert worker_env(redis_args)["AMPERITY_REDIS_URL"].startswith("redis://:pw-pw-pw-pw@")
    unlimited = parse("--control-plane-rate", "unlimited", "--profile-rate", "unlimited")
    async with worker_budgets(unlimited) as (own, theirs):
        assert isinstance(theirs, OwnBudget)  # nothing to share


def test_the_cli_extracts_through_redis_for_a_sandbox(fake_tenant: Any, tmp_path: Path) -> None:
    redis = RedisServer()
    redis.start()
    try:
        env = {**cli_env(fake_tenant), "AMPERITY_REDIS_URL": redis.url, "AMPERITY_PARENT_TENANT": "acme-prod"}
        out = tmp_path / "indexes.jsonl"
        result = run_cli(["extract", "list_indexes", "--out", str(out)], env)
        assert result.returncode == 0, result.stderr
        keys = anyio.run(_keys, redis.url)
        tenant = fake_tenant.config.tenant
        assert any("{acme-prod:profile}" in key for key in keys), keys
        assert not any(f"{{{tenant}:profile}}" in key for key in keys), keys
    finally:
        redis.stop()


async def _keys(url: str) -> list[str]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        return [key.decode() for key in await client.keys("*")]
    finally:
        await client.aclose()
