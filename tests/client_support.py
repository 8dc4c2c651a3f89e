"""An AmperityClient for tests that are not about rate limits: no limiter waits, a few retries."""

from __future__ import annotations

from typing import Any

from amperity_async import AmperityClient, StaticToken

DEFAULT_TOKEN = "static-token-for-tests"


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
