"""An AmperityClient for tests that are not about rate limits (no limiter waits, a few retries), and
the error it raises against a hostile server."""

from __future__ import annotations

from typing import Any, TypeVar

import anyio
import pytest
from hostile_server import Handler, HostileServer, hostile_server

from amperity_async import AmperityClient, StaticToken
from amperity_async.api.segments import list_segment

DEFAULT_TOKEN = "static-token-for-tests"
# Far above every bound used in the tests: reaching it would mean a bound did not hold.
HANG_GUARD = 60
E = TypeVar("E", bound=BaseException)


class NoLimit:
    """A rate limiter that never waits."""

    async def acquire(self, cost: float = 1.0) -> None:
        return None

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        return None


def client_for(base_url: str, **options: Any) -> AmperityClient:
    """A client of tenant ``acme`` at ``base_url``; ``options`` override the defaults."""
    settings: dict[str, Any] = {
        "tenant": "acme",
        "auth": StaticToken(DEFAULT_TOKEN),
        "base_url": base_url,
        "rate_limit": NoLimit(),
        "profile_rate_limit": NoLimit(),
        "max_retries": 2,
    }
    settings.update(options)
    return AmperityClient(**settings)


async def error_from(handler: Handler, expected: type[E], **options: Any) -> tuple[E, HostileServer]:
    """What one ``list_segment`` call raises against a hostile server (``expected``, checked), and the
    server, to look at what it received. A guard far above any bound in the tests stops a hang."""
    async with hostile_server(handler) as server, client_for(server.base_url, **options) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(expected) as caught:
            await client.call(list_segment)
    return caught.value, server
