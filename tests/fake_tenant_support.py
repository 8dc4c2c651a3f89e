"""Shared helpers of the fake tenant tests: a manual clock, an authenticated httpx client, raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
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


class RawAnswer:
    """What came back on a connection, byte for byte, and when its parts arrived (event-loop seconds)."""

    def __init__(self, data: bytes, sent_at: float, head_done_at: float | None, closed_at: float) -> None:
        self.data = data
        self.sent_at = sent_at
        self.head_done_at = head_done_at
        self.closed_at = closed_at

    @property
    def head(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def raw_request(
    method: str, path: str, hdrs: dict[str, str] | None = None, body: bytes = b"", host: str = "fake"
) -> bytes:
    """An HTTP/1.1 request as bytes, asking the server to close the connection after its answer."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (hdrs or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(tenant: FakeTenant, request: bytes, *, limit: int = 1 << 24) -> RawAnswer:
    """Send raw bytes and read everything until the server closes the connection (or ``limit`` bytes)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(tenant.config.host, tenant.port)
    try:
        sent_at = loop.time()
        writer.write(request)
        await writer.drain()
        data = b""
        head_done_at = None
        while len(data) < limit:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
            if head_done_at is None and b"\r\n\r\n" in data:
                head_done_at = loop.time()
        return RawAnswer(data, sent_at, head_done_at, loop.time())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
