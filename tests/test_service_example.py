"""examples/service.py served by uvicorn in its own process, driven with real HTTP requests, against
the fake tenant: lookups, events that change what a later lookup finds, and what the service does
when Amperity is slow, failing or handed an event too large to send."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from amperity_async.testing import FakeTenant, FakeTenantConfig

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")
_STARTED = b"Application startup complete"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the fake tenant is aiohttp


class Service:
    def __init__(self, tenant: FakeTenant, http: httpx.AsyncClient, log: bytearray) -> None:
        self.tenant = tenant
        self.http = http
        self.log = log

    async def personalize(self, email: str | None) -> httpx.Response:
        return await self.http.get("/personalize", params={} if email is None else {"email": email})

    async def track(self, event: Any) -> httpx.Response:
        return await self.http.post("/track", json=event)


@contextlib.asynccontextmanager
async def serving(deadline: float = 5.0, **settings: Any) -> AsyncIterator[Service]:
    """The fake tenant in this process, the example under uvicorn in another, and a client of it."""
    settings.setdefault("profiles_per_collection", 50)
    async with FakeTenant(FakeTenantConfig(**settings)) as tenant:
        env = {
            **os.environ,
            "AMPERITY_BASE_URL": tenant.base_url,
            "AMPERITY_TENANT": tenant.tenant,
            "AMPERITY_CLIENT_ID": tenant.client_id,
            "AMPERITY_CLIENT_SECRET": tenant.client_secret,
            "PERSONALIZE_DEADLINE_SECONDS": str(deadline),
            "PYTHONUNBUFFERED": "1",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(EXAMPLES),
            "service:app",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--lifespan",
            "on",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        log = bytearray()
        try:
            port = None
            with anyio.fail_after(60):
                while port is None or _STARTED not in log:
                    line = await process.stderr.readline()
                    assert line, f"uvicorn exited before serving:\n{log.decode(errors='replace')}"
                    log += line
                    found = _LISTENING.search(line)
                    port = int(found.group(1)) if found else port
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                yield Service(tenant, http, log)
        finally:
            process.terminate()
            with anyio.move_on_after(20):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def _email_of_a_profile(tenant: FakeTenant) -> tuple[str, dict[str, Any]]:
    profile = next(iter(tenant.profile_store.collection("pc-customers").profiles.values()))
    return profile.links["email"][0], profile.attributes


async def test_a_known_visitor_is_greeted_and_an_unknown_one_is_welcomed() -> None:
    async with serving() as service:
        email, attributes = _email_of_a_profile(service.tenant)
        known = await service.personalize(email)
        assert known.status_code == 200
        assert known.json() == {
            "personalized": True,
            "profile_id": known.json()["profile_id"],
            "greeting": f"Welcome back, {attributes['given_name']}!",
            "tier": attributes["loyalty_tier"],
        }
        unknown = await service.personalize("first.visit@example.com")
        assert unknown.json() == {"personalized": False, "greeting": "Welcome!"}
        assert (await service.personalize(None)).status_code == 400
        assert service.tenant.stats["by_operation"]["lookup-profile"] == 2


async def test_a_tracked_event_is_found_by_the_next_lookup() -> None:
    async with serving() as service:
        sent = await service.track({"email": "zoe@example.com", "event_type": "signup", "given_name": "Zoe"})
        assert (sent.status_code, sent.json()) == (202, {"published": True})
        found = await service.personalize("zoe@example.com")
        assert found.json()["greeting"] == "Welcome back, Zoe!"
        assert (await service.track(["not", "an", "object"])).status_code == 400


async def test_hundreds_of_concurrent_lookups_share_one_client() -> None:
    async with serving(profiles_per_collection=300) as service:
        emails = [f"customer{i}@example.com" for i in range(300)]
        answers: list[httpx.Response] = []

        async def look(email: str) -> None:
            answers.append(await service.personalize(email))

        async with anyio.create_task_group() as group:
            for email in emails:
                group.start_soon(look, email)
        assert [a.status_code for a in answers] == [200] * 300
        assert all(a.json()["personalized"] for a in answers)
        # One token for the whole process, however many requests.
        assert service.tenant.stats["tokens_issued"] == 1


async def test_a_503_is_retried_and_the_event_published_once() -> None:
    async with serving(fail_first={"send-event": (503, 2)}) as service:
        sent = await service.track({"email": "retry@example.com", "event_type": "purchase"})
        assert (sent.status_code, sent.json()) == (202, {"published": True})
        assert service.tenant.stats["by_operation"]["send-event"] == 3
        assert service.tenant.profile_store.published == 1


async def test_a_dropping_stream_is_reported_as_not_published() -> None:
    async with serving(dropping_streams="es-web-events") as service:
        sent = await service.track({"email": "dropped@example.com"})
        assert (sent.status_code, sent.json()) == (202, {"published": False})


async def test_an_event_over_64_kb_is_refused_before_it_is_sent() -> None:
    async with serving() as service:
        refused = await service.track({"email": "big@example.com", "blob": "x" * 70_000})
        assert refused.status_code == 413
        assert "65536" in refused.json()["error"]
        assert "send-event" not in service.tenant.stats["by_operation"]


async def test_a_paused_stream_is_reported_and_not_retried() -> None:
    async with serving(paused_streams="es-web-events") as service:
        refused = await service.track({"email": "paused@example.com"})
        assert refused.status_code == 503
        assert service.tenant.stats["by_operation"]["send-event"] == 1


async def test_a_slow_tenant_gets_the_page_answered_without_personalization() -> None:
    # The tenant takes 30 s per answer; the service's lookup deadline is a tenth of a second.
    async with serving(deadline=0.1, latency=30.0) as service:
        email, _ = _email_of_a_profile(service.tenant)
        answer = await service.personalize(email)
        assert answer.json() == {"personalized": False, "greeting": "Welcome!"}
