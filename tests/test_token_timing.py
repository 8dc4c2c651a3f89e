"""Tokens are attached at send time and 401s refresh once per token generation (issue item 7).

A ManualClock drives everything: the rate limiter, token expiry at the API, and the waits, so the
scenarios of the issue (100 tasks at 10/s on 20 s tokens; 200 calls to an endpoint that always
answers 401) run in virtual time, exactly.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from client_support import NoLimit

from amperity_async import (
    AmperityClient,
    AuthenticationError,
    ClientCredentials,
    ManualClock,
    TokenCredentialsRejectedError,
)
from amperity_async.api.segments import list_segment

pytestmark = pytest.mark.anyio

BASE = "https://app.amperity.com/api"
PAGE = {"data": [], "next_token": ""}


class Tenant:
    """A token endpoint issuing tok-1, tok-2, ... valid ``lifetime`` seconds, and an API that checks
    them against the same clock (``always_401``: it refuses every token)."""

    def __init__(self, clock: ManualClock, lifetime: float, *, always_401: bool = False) -> None:
        self.clock, self.lifetime, self.always_401 = clock, lifetime, always_401
        self.expiry: dict[str, float] = {}
        self.sent: list[tuple[float, str]] = []  # (time, token) of each API request
        self.expired_sent = 0
        self.first_status: int | None = None

    @property
    def token_requests(self) -> int:
        return len(self.expiry)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = self.clock.time()
        if request.url.path.endswith("/oauth2/token"):
            token = f"tok-{len(self.expiry) + 1}"
            self.expiry[token] = now + self.lifetime
            return httpx.Response(200, json={"access_token": token, "expires_in": self.lifetime})
        token = request.headers["authorization"].removeprefix("Bearer ")
        self.sent.append((self.clock.now(), token))
        if now >= self.expiry[token]:
            self.expired_sent += 1
            return httpx.Response(401, json={"status": 401, "message": "token expired"})
        if self.always_401:
            return httpx.Response(401, json={"status": 401, "message": "not allowed"})
        return httpx.Response(200, json=PAGE)


def make_client(tenant: Tenant, clock: ManualClock, **options: Any) -> AmperityClient:
    return AmperityClient(
        tenant="acme",
        auth=ClientCredentials("client-1", "secret-for-timing-tests"),
        base_url=BASE,
        transport=httpx.MockTransport(tenant),
        clock=clock,
        **options,
    )


async def test_100_tasks_at_10_per_second_on_20_second_tokens_never_send_an_expired_token() -> None:
    clock = ManualClock()
    tenant = Tenant(clock, lifetime=20)
    outcomes: list[str] = []
    async with make_client(tenant, clock) as client:  # the default 10/s control-plane bucket

        async def worker() -> None:
            for _ in range(6):
                try:
                    await client.call(list_segment)
                    outcomes.append("ok")
                except AuthenticationError:
                    outcomes.append("401")

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(worker)
            await clock.advance(120)
    assert len(outcomes) == 600
    assert outcomes.count("401") == 0
    assert tenant.expired_sent == 0
    waited = max(t for t, _ in tenant.sent)
    assert waited > 55, "the last requests queued for about a minute, three token lifetimes"
    # Renewed halfway through each 20 s life, on demand: about one token per 10 s of traffic.
    assert 6 <= tenant.token_requests <= 8


async def test_200_calls_to_an_always_401_endpoint_make_a_bounded_number_of_token_requests() -> None:
    clock = ManualClock()
    tenant = Tenant(clock, lifetime=3600, always_401=True)
    failures: list[BaseException] = []
    async with make_client(tenant, clock, rate_limit=NoLimit(), unauthorized_refresh_interval=5.0) as client:

        async def call() -> None:
            try:
                await client.call(list_segment)
            except AuthenticationError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(call)
        assert len(failures) == 200
        assert tenant.token_requests == 2, "the first token, and one renewal for all 200 rejections"
        # A call replays at most once, and only when its 401 came for a token that was since replaced.
        assert 200 < len(tenant.sent) <= 400
        assert [token for _, token in tenant.sent].count("tok-1") == len(tenant.sent) - 200

        await clock.advance(1)
        for _ in range(50):
            with pytest.raises(AuthenticationError):
                await client.call(list_segment)
        assert tenant.token_requests == 2, "no renewal within the interval: the 401s are final"

        await clock.advance(5)
        with pytest.raises(AuthenticationError):
            await client.call(list_segment)
        assert tenant.token_requests == 3, "after the interval, a 401 may renew again, once"


async def test_a_retry_after_a_long_retry_after_leaves_with_a_fresh_token() -> None:
    clock = ManualClock()
    tenant = Tenant(clock, lifetime=30)
    answers = iter(
        [httpx.Response(429, json={"status": 429, "message": "slow"}, headers={"Retry-After": "50"})]
    )

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/segments"):
            tenant(request)  # records the token it carried, and its expiry
            return next(answers, httpx.Response(200, json=PAGE))
        return tenant(request)

    async with (
        AmperityClient(
            tenant="acme",
            auth=ClientCredentials("client-1", "secret-for-timing-tests"),
            base_url=BASE,
            transport=httpx.MockTransport(api),
            clock=clock,
        ) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(client.call, list_segment)
        await clock.advance(60)
    assert tenant.sent == [(0.0, "tok-1"), (50.0, "tok-2")]
    assert tenant.expired_sent == 0


async def test_a_wrong_client_secret_is_an_authentication_error_without_a_retry() -> None:
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(401, content=json.dumps({"error": "invalid_client"}).encode())

    async with AmperityClient(
        tenant="acme",
        auth=ClientCredentials("client-1", "wrong-secret-value"),
        base_url=BASE,
        transport=httpx.MockTransport(handler),
    ) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.call(list_segment)
    assert isinstance(caught.value, TokenCredentialsRejectedError)
    assert caught.value.status_code == 401 and caught.value.url == f"{BASE}/v0/oauth2/token"
    assert requests == 1
