"""The rate budget an extraction's workers share, and each API's rate in it.

Amperity's limits belong to the tenant (10 requests/s on the control-plane API, 2000/s on the
Profile API, raised on request), so every worker of one extraction must draw on one budget:

- ``OwnBudget``: limiters of this process alone, for an extraction in one process;
- ``LocalBudget``: a budget a parent process serves to worker processes on the same machine
  (``budget_server``), every one-second window of all of them kept to the limit;
- ``RedisBudget``: a budget in Redis (``RedisTokenBucket``), for workers on any machine.

``Rates`` says per API: the documented limit (None), a raised limit in requests/s, or
``UNLIMITED`` (no client-side limit). Budgets are picklable and hold no secret: a Redis URL with a
password is refused when pickled (leave ``url`` unset and give the workers ``AMPERITY_REDIS_URL``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import attrs

from ..client import CONTROL_PLANE_RATE, PROFILE_RATE, default_bucket
from ..errors import ConfigurationError
from ..operations import CONTROL_PLANE, PROFILE
from ..ratelimit import UNLIMITED, Unlimited
from .connection import Limiter

REDIS_URL_VARIABLE = "AMPERITY_REDIS_URL"
DOCUMENTED_RATES: Mapping[str, float] = {CONTROL_PLANE: CONTROL_PLANE_RATE, PROFILE: PROFILE_RATE}
APIS = (CONTROL_PLANE, PROFILE)

RateSetting = float | Unlimited | None
"""One API's rate: requests per second, ``UNLIMITED``, or None for the documented limit."""


def parse_rate(text: str, what: str) -> float | Unlimited:
    """A rate as typed by a user: a positive number of requests per second, or ``unlimited``."""
    value = text.strip().lower()
    if value in ("unlimited", "none", "off"):
        return UNLIMITED
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigurationError(
            f"{what} takes requests per second (a number > 0) or 'unlimited', got {text!r}"
        )
    return rate


def _rate(value: RateSetting) -> RateSetting:
    if value is None or value is UNLIMITED:
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigurationError(f"a rate is requests per second (> 0), UNLIMITED or None, got {value!r}")
    return float(value)


@attrs.frozen
class Rates:
    """Each API's rate; None is the documented limit."""

    control_plane: RateSetting = attrs.field(default=None, converter=_rate)
    profile: RateSetting = attrs.field(default=None, converter=_rate)

    def setting(self, api: str) -> RateSetting:
        return self.profile if api == PROFILE else self.control_plane

    def limit(self, api: str) -> float | Unlimited:
        """The rate in force for ``api``: the setting, or the documented limit."""
        setting = self.setting(api)
        return DOCUMENTED_RATES[api] if setting is None else setting


class Budget(Protocol):
    """Where a worker's limiters come from: ``async with budget.limiters(tenant) as limiters``."""

    def limiters(self, tenant: str) -> contextlib.AbstractAsyncContextManager[dict[str, Limiter]]: ...


@attrs.frozen
class OwnBudget:
    """This process's own buckets at the chosen rates (the client's default bucket at the documented ones)."""

    rates: Rates = Rates()

    @contextlib.asynccontextmanager
    async def limiters(self, tenant: str) -> AsyncIterator[dict[str, Limiter]]:
        chosen: dict[str, Limiter] = {}
        for api in APIS:
            setting = self.rates.setting(api)
            chosen[api] = setting if setting is None or setting is UNLIMITED else default_bucket(setting)
        yield chosen


@attrs.frozen(getstate_setstate=False)
class RedisBudget:
    """One budget in Redis for every worker, wherever it runs (the ``redis`` extra).

    ``url``: the Redis URL, or None to read ``AMPERITY_REDIS_URL`` where the workers run.
    ``parent_tenant``: for a sandbox, its production tenant, whose Profile API budget it shares.
    """

    rates: Rates = Rates()
    url: str | None = None
    parent_tenant: str | None = None
    expected_workers: int = 1
    on_unavailable: Literal["raise", "local"] = "raise"

    def __getstate__(self) -> dict[str, Any]:
        if self.url is not None and _has_password(self.url):
            raise ConfigurationError(
                f"a RedisBudget whose URL carries a password cannot be sent to workers; leave url unset "
                f"and set {REDIS_URL_VARIABLE} in the workers' environment"
            )
        return {field.name: getattr(self, field.name) for field in attrs.fields(type(self))}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def resolved_url(self) -> str:
        url = self.url or os.environ.get(REDIS_URL_VARIABLE)
        if not url:
            raise ConfigurationError(f"no Redis URL: pass RedisBudget(url=...) or set {REDIS_URL_VARIABLE}")
        return url

    @contextlib.asynccontextmanager
    async def limiters(self, tenant: str) -> AsyncIterator[dict[str, Limiter]]:
        from ..redis_bucket import RedisTokenBucket

        url = self.resolved_url()
        options: dict[str, Any] = {
            "expected_workers": self.expected_workers,
            "on_unavailable": self.on_unavailable,
        }
        async with contextlib.AsyncExitStack() as stack:
            chosen: dict[str, Limiter] = {}
            for api in APIS:
                setting = self.rates.setting(api)
                if setting is UNLIMITED:
                    chosen[api] = UNLIMITED
                    continue
                if setting is None:  # the documented limit, as for_api knows it
                    bucket = RedisTokenBucket.for_api(
                        url,
                        tenant=tenant,
                        api="profile" if api == PROFILE else "control-plane",
                        parent_tenant=self.parent_tenant,
                        **options,
                    )
                else:
                    bucket = RedisTokenBucket(
                        url, tenant=tenant, api=api, rate=setting, parent_tenant=self.parent_tenant, **options
                    )
                chosen[api] = await stack.enter_async_context(bucket)
            yield chosen


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return True  # unreadable: treat it as secret
