"""Retry-After is honoured up to a cap, and no attempt bypasses the limiter (issue item 10, part).

A Retry-After above ``max_retry_after`` fails that call at once with the server's value and does not
pause the next calls; one within the cap pauses the shared limiter. aiohttp's hidden re-send on a
pooled connection the server closed is off: every attempt passes the limiter and the stats.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from hostile_server import PAGE, Request, hostile_server, response

from amperity_async import AmperityClient, APIConnectionError, ManualClock, RateLimitError, StaticToken
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import run_workflow
from amperity_async.models import WorkflowRunRequest

pytestmark = pytest.mark.anyio

BASE = "https://app.amperity.com/api"
OK = {"data": [], "next_token": ""}


class Server:
    """Answers 429 with ``retry_after`` to the first request, 200 to the others; records times."""

    def __init__(self, clock: ManualClock, retry_after: str) -> None:
        self.clock, self.retry_after = clock, retry_after
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(self.clock.now())
        if len(self.times) == 1:
            return httpx.Response(
                429, json={"status": 429, "message": "slow down"}, headers={"Retry-After": self.retry_after}
            )
        return httpx.Response(200, json=OK)


def client_with(server: Server, clock: ManualClock, **options: Any) -> AmperityClient:
    return AmperityClient(
        tenant="acme",
        auth=StaticToken("token-for-retry-after-tests"),
        base_url=BASE,
        transport=httpx.MockTransport(server),
        clock=clock,
        **options,
    )


async def test_a_retry_after_above_the_cap_fails_the_call_at_once_and_pauses_nothing() -> None:
    clock = ManualClock()
    server = Server(clock, "3600")
    async with client_with(server, clock, max_retry_after=60) as client:  # the default 10/s bucket
        with pytest.raises(RateLimitError) as caught:
            await client.call(list_segment)
        assert caught.value.retry_after == 3600.0
        assert client.stats.rate_limited == 1 and client.stats.retries == 0

        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, list_segment)
            await clock.advance(1)
    assert server.times[0] == 0.0
    assert server.times[1] < 1.0, "the next call is not held for the server's hour, nor the cap's minute"


async def test_a_retry_after_within_the_cap_pauses_the_shared_limiter() -> None:
    clock = ManualClock()
    server = Server(clock, "30")
    async with client_with(server, clock, max_retry_after=60) as client:

        async def later_call() -> None:
            await clock.sleep_until(1.0)
            await client.call(list_segment)

        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, list_segment)
            tg.start_soon(later_call)
            await clock.advance(40)
    assert server.times[0] == 0.0
    assert len(server.times) == 3
    assert min(server.times[1:]) >= 30.0, "nothing is sent during the server's pause"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiohttp's behaviour is the point here
async def test_a_pooled_connection_the_server_closed_is_retried_through_the_limiter_and_the_stats(
    anyio_backend: str,
) -> None:
    async def close_reused(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.index > 0:
            return False  # read the request on the reused connection, then close without an answer
        await stream.send(response(body=PAGE))
        return True

    class Counting:
        acquired = 0

        async def acquire(self, cost: float = 1.0) -> None:
            self.acquired += 1

        def on_rate_limited(self, retry_after: float | None = None) -> None:
            return None

    limiter = Counting()
    async with (
        hostile_server(close_reused) as server,
        AmperityClient(
            tenant="acme",
            auth=StaticToken("token-for-resend-tests"),
            base_url=server.base_url,
            rate_limit=limiter,
            max_retries=3,
        ) as client,
    ):
        for _ in range(3):
            await client.call(list_segment)
        stats = client.stats
        with pytest.raises(APIConnectionError, match="not resent"):
            await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-1"))
    assert [(r.connection, r.index) for r in server.requests] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert stats.requests == limiter.acquired == len(server.requests) == 6
    assert stats.errors == 3 and stats.retries == 2
    assert server.requests[-1].method == "POST", "the POST went out once and was not sent again"
