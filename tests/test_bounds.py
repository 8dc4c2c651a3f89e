"""Bounded calls: a server that drips, never finishes, or sends a bomb gets a typed error within the
configured bound, never a hang and never unbounded memory (issue item 5).

Real sockets on 127.0.0.1 where the server's timing is the point (both backends: aiohttp on asyncio,
httpx's own transport on trio); ManualClock where the client's own waits are.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from client_support import HANG_GUARD, client_for, error_from
from hostile_server import PAGE, TOKEN_BODY, Request, gzip_bomb, hostile_server, response

from amperity_async import (
    APITimeoutError,
    ClientCredentials,
    ManualClock,
    ResponseTooLargeError,
    TokenBucket,
    TokenEndpointError,
    TokenEndpointTimeoutError,
)
from amperity_async.api.segments import list_segment
from amperity_async.custom.calls import Bounds
from amperity_async.custom.refresher import TokenRefresher
from amperity_async.custom.retry import RetryPolicy
from amperity_async.custom.tokens import TokenEndpointContext

pytestmark = pytest.mark.anyio

TOKEN = "static-token-for-bounds-tests"


async def drip_forever(stream: anyio.abc.SocketStream, *, headers_first: bool) -> None:
    """One byte every 50 ms, for ever: a per-read timeout never fires."""
    if headers_first:
        await stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
    else:
        await stream.send(b"HTTP/1.1 200 OK\r\nX-Slow: ")  # the header block never ends
    while True:
        await stream.send(b" ")
        await anyio.sleep(0.05)


async def dripping(request: Request, stream: anyio.abc.SocketStream) -> bool:
    await drip_forever(stream, headers_first=True)
    return False


async def dripping_headers(request: Request, stream: anyio.abc.SocketStream) -> bool:
    await drip_forever(stream, headers_first=False)
    return False


@pytest.mark.parametrize("handler", [dripping, dripping_headers], ids=["body", "headers"])
async def test_a_dripping_server_hits_the_per_attempt_timeout(handler: Any) -> None:
    async with (
        hostile_server(handler) as server,
        client_for(server.base_url, timeout=0.5, max_retries=1) as client,
    ):
        with anyio.fail_after(HANG_GUARD), pytest.raises(APITimeoutError) as caught:
            await client.call(list_segment)
    error = caught.value
    assert error.bound == "timeout" and error.seconds == 0.5
    assert "per-attempt timeout of 0.5 s" in str(error) and "gave up after 2 attempts" in str(error)
    assert len(server.requests) == 2, "a GET that timed out is retried, within max_retries"
    assert client.stats.requests == 2 and client.stats.errors == 2


async def test_the_deadline_bounds_the_whole_call_across_retries() -> None:
    error, server = await error_from(dripping, APITimeoutError, timeout=0.4, deadline=1.0, max_retries=50)
    assert error.bound == "deadline" and error.seconds == 1.0
    assert "deadline of 1 s" in str(error), str(error)
    assert 1 <= len(server.requests) <= 4, "attempts stop at the deadline, not at max_retries"


async def test_a_dripping_token_endpoint_is_bounded_by_the_call_deadline() -> None:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.path.endswith("/oauth2/token"):
            await drip_forever(stream, headers_first=True)
        await stream.send(response(body=PAGE))
        return True

    auth = ClientCredentials("client", "client-secret-for-bounds")
    error, server = await error_from(handler, APITimeoutError, auth=auth, timeout=30, deadline=0.5)
    assert error.bound == "deadline"
    assert "getting an access token" in str(error)
    assert server.paths() == ["POST /api/v0/oauth2/token"]


async def test_a_token_request_gets_the_per_attempt_timeout() -> None:
    async with hostile_server(dripping) as server:
        inner = httpx.AsyncHTTPTransport()
        refresher = TokenRefresher(
            ClientCredentials("client", "client-secret-for-bounds"),
            context=TokenEndpointContext(
                base_url=server.base_url, tenant="acme", transport=inner, bounds=Bounds(timeout=0.3)
            ),
            retry=RetryPolicy(max_retries=1, backoff_base=0),
        )
        with anyio.fail_after(HANG_GUARD), pytest.raises(TokenEndpointTimeoutError) as caught:
            await refresher.get()
        await inner.aclose()
    assert isinstance(caught.value, APITimeoutError) and caught.value.bound == "timeout"
    assert "no complete answer within the timeout of 0.3 s" in str(caught.value)
    assert len(server.requests) == 2


async def test_the_replay_after_a_401_is_within_the_deadline() -> None:
    tokens_issued = 0

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        nonlocal tokens_issued
        if request.path.endswith("/oauth2/token"):
            tokens_issued += 1
            if tokens_issued > 1:
                await drip_forever(stream, headers_first=True)  # the renewal never completes
            await stream.send(response(body=TOKEN_BODY % b"first-token-value"))
            return True
        await stream.send(response(401, b'{"status": 401, "message": "revoked"}', reason="Unauthorized"))
        return True

    auth = ClientCredentials("client", "client-secret-for-bounds")
    error, _ = await error_from(handler, APITimeoutError, auth=auth, timeout=30, deadline=3.0)
    assert error.bound == "deadline"
    assert "renewing the access token after a 401" in str(error)


async def test_an_endless_fast_body_stops_at_max_response_bytes() -> None:
    async def endless(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
        while True:
            await stream.send(chunk)

    error, server = await error_from(endless, ResponseTooLargeError, max_response_bytes=2_000_000)
    assert error.limit == 2_000_000
    assert "max_response_bytes=2,000,000" in str(error)
    assert len(server.requests) == 1, "a body that is too large is not asked for again"


async def test_a_gzip_bomb_is_caught_on_the_decompressed_size() -> None:
    bomb = gzip_bomb(64 * 1024 * 1024)
    assert len(bomb) < 100_000

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(body=bomb, headers={"Content-Encoding": "gzip"}))
        return True

    await error_from(handler, ResponseTooLargeError, max_response_bytes=1_000_000)


class NeverRead(httpx.AsyncByteStream):
    closed = False

    async def __aiter__(self) -> Any:
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    async def aclose(self) -> None:
        self.closed = True


async def test_a_declared_length_above_the_cap_is_refused_before_reading() -> None:
    router_calls = 0
    stream = NeverRead()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal router_calls
        router_calls += 1
        return httpx.Response(200, headers={"Content-Length": "5000000"}, stream=stream)

    async with client_for(
        "https://app.amperity.com/api", transport=httpx.MockTransport(handler), max_response_bytes=4_999_999
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.call(list_segment)
    assert router_calls == 1 and stream.closed


async def test_a_token_response_that_is_too_large_is_a_token_endpoint_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        padding = "x" * 50_000
        return httpx.Response(200, json={"access_token": "t" * 10, "expires_in": 60, "padding": padding})

    auth = ClientCredentials("client", "client-secret-for-bounds")
    async with client_for(
        "https://app.amperity.com/api",
        auth=auth,
        transport=httpx.MockTransport(handler),
        max_response_bytes=10_000,
    ) as client:
        with pytest.raises(TokenEndpointError, match="exceeds max_response_bytes=10,000"):
            await client.call(list_segment)


async def test_a_call_queued_behind_the_rate_limiter_past_its_deadline_times_out() -> None:
    clock = ManualClock()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now())
        return httpx.Response(200, content=PAGE, headers={"Content-Type": "application/json"})

    bucket = TokenBucket(1, clock=clock)
    outcomes: list[str] = []
    async with client_for(
        "https://app.amperity.com/api",
        transport=httpx.MockTransport(handler),
        rate_limit=bucket,
        deadline=1.5,
        clock=clock,
    ) as client:

        async def one_call() -> None:
            try:
                await client.call(list_segment)
                outcomes.append("ok")
            except APITimeoutError as exc:
                outcomes.append(f"{exc.bound}: {exc}")

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one_call)
            await clock.advance(10)
    assert sent == [0.0, 1.0], "the third call's turn (t=2) comes after its deadline (t=1.5)"
    assert outcomes[:2] == ["ok", "ok"]
    assert outcomes[2].startswith("deadline: GET https://app.amperity.com/api/segments: the call's deadline")
    assert "waiting for the rate limiter" in outcomes[2]


async def test_no_retry_waits_past_the_deadline_with_a_manual_clock() -> None:
    clock = ManualClock()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now())
        return httpx.Response(503, json={"status": 503, "message": "busy"}, headers={"Retry-After": "2"})

    async with client_for(
        "https://app.amperity.com/api",
        transport=httpx.MockTransport(handler),
        deadline=5.0,
        max_retries=10,
        clock=clock,
    ) as client:
        errors: list[Exception] = []

        async def call() -> None:
            try:
                await client.call(list_segment)
            except Exception as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await clock.advance(100)
    assert sent == [0.0, 2.0, 4.0], "a fourth attempt would start at t=6, after the deadline"
    assert type(errors[0]).__name__ == "InternalServerError"


def test_bounds_are_checked() -> None:
    for bad in (
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": math.inf},
        {"deadline": "5"},
        {"max_response_bytes": 0},
    ):
        with pytest.raises(ValueError):
            Bounds(**bad)  # type: ignore[arg-type]
    assert Bounds(timeout=None, deadline=None).httpx_timeout() == httpx.Timeout(None)
