"""Shared helpers of the fake tenant tests: a manual clock and an authenticated httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from amperity_async.testing import FakeTenant, FakeTenantConfig

CONTROL_PLANE = "2024-04-01"
PROFILE = "2025-07-31"


class ManualClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def headers(tenant: FakeTenant, token: str, version: str = CONTROL_PLANE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "amperity-tenant": tenant.tenant, "api-version": version}


@asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[FakeTenant, httpx.AsyncClient, str]]:
    """A tenant (limits off unless asked), an httpx client on its base URL, and a valid token."""
    settings.setdefault("rate_limits", False)
    async with FakeTenant(FakeTenantConfig(**settings)) as tenant:
        async with httpx.AsyncClient(base_url=tenant.base_url, timeout=30) as client:
            yield tenant, client, tenant.issue_token()


async def walk(
    client: httpx.AsyncClient, path: str, hdrs: dict[str, str], params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list operation, following next_token; and the number of pages."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    pages = 0
    while True:
        response = await client.get(path, params=query, headers=hdrs)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["data"]
        token = body.get("next_token")
        if not token:
            return items, pages
        query["next_token"] = token
