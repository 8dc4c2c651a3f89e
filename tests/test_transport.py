"""The Amperity transport: headers, retries, rate limits and deprecation warnings, with exact counts.

A respx router is the innermost transport (``httpx.MockTransport(router.async_handler)``), so every
layer above it runs; a ManualClock makes backoff and Retry-After waits exact and instant. The last
tests talk to a real HTTP server on 127.0.0.1 through the default (aiohttp or httpx) transport.
"""

from __future__ import annotations

import email.utils
import logging
import math
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import anyio
import anyio.abc
import httpx
import pytest
import respx

from amperity_async.api.campaigns import list_campaign, list_campaign_draft
from amperity_async.api.profiles import list_profiles
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import run_workflow
from amperity_async.client import Client
from amperity_async.custom.calls import Bounds
from amperity_async.custom.clock import ManualClock
from amperity_async.custom.connections import default_inner_transport
from amperity_async.custom.errors import (
    AmperityDeprecationWarning,
    APIConnectionError,
    APITimeoutError,
    UnstableOperationError,
)
from amperity_async.custom.operations import OperationInfo
from amperity_async.custom.ratelimit import TokenBucket
from amperity_async.custom.retry import RetryPolicy, parse_retry_after
from amperity_async.custom.transport import AmperityTransport
from amperity_async.models.workflow_run_request import WorkflowRunRequest

pytestmark = pytest.mark.anyio

BASE_URL = "https://app.amperity.com/api"
VERSIONS = {"control-plane": "2024-04-01", "profile": "2025-07-31"}
PAGE = {"data": [], "next_token": ""}
WORKFLOW = {
    "id": "wf-1",
    "state": "running",
    "type": "courier-group",
    "name": "daily",
    "tenant": "acme",
    "created_at": "2026-01-02T03:04:05+00:00",
}
T = TypeVar("T")

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests with the given steps in order (the last repeats) and records arrival times."""

    def __init__(self, clock: ManualClock, *steps: Step) -> None:
        self.clock, self.steps = clock, list(steps)
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(self.clock.now())
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    @property
    def calls(self) -> int:
        return len(self.times)


class RecordingLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.rate_limited: list[float | None] = []

    async def acquire(self, cost: float = 1.0) -> None:
        self.acquired += 1

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        self.rate_limited.append(retry_after)


def make_transport(
    router: respx.Router | Callable[[httpx.Request], httpx.Response],
    clock: ManualClock,
    *,
    limiter: Any = None,
    retry: RetryPolicy | None = None,
    versions: dict[str, str] | None = None,
    random: Callable[[], float] = lambda: 1.0,
    bounds: Bounds | None = None,
) -> AmperityTransport:
    def limiter_for(op: OperationInfo | None) -> Any:
        return limiter

    # A plain handler where respx would get in the way (it replaces the __cause__ of exceptions).
    handler = router.async_handler if isinstance(router, respx.Router) else router
    return AmperityTransport(
        httpx.MockTransport(handler),
        tenant="acme",
        api_versions=versions or VERSIONS,
        limiter_for=limiter_for,
        retry=retry or RetryPolicy(),
        bounds=bounds or Bounds(),
        clock=clock,
        random=random,
    )


def generated_client(transport: httpx.AsyncBaseTransport) -> Client:
    # Generated paths carry their API's base path (/api/...): they are relative to the host.
    root = BASE_URL.removesuffix("/api")
    client = Client(base_url=root)
    client.set_async_httpx_client(httpx.AsyncClient(base_url=root, transport=transport))
    return client


async def drive(clock: ManualClock, call: Callable[[], Awaitable[T]], *, until: float = 1000.0) -> T:
    """Run ``call`` while virtual time moves ``until`` seconds ahead; return or raise its outcome."""
    results: list[T] = []
    errors: list[Exception] = []

    async def runner() -> None:
        try:
            results.append(await call())
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await clock.advance(until)
    if errors:
        raise errors[0]
    return results[0]


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False, base_url=BASE_URL)


WALL_START = 1_700_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_start=WALL_START)


# headers and versions


async def test_raw_generated_calls_carry_tenant_and_the_version_of_their_api(
    router: respx.Router, clock: ManualClock
) -> None:
    segments = router.get("/segments").respond(200, json=PAGE)
    profiles = router.get("/indexes/ix-1/profiles").respond(200, json=PAGE)
    other = router.get("/not-in-the-spec").respond(200, json={})
    client = generated_client(make_transport(router, clock))
    await list_segment.asyncio_detailed(client=client, limit=10)
    await list_profiles.asyncio_detailed(id="ix-1", client=client)
    # A request the spec does not know, under the control plane's base path.
    await client.get_async_httpx_client().get("/api/not-in-the-spec")
    for route, version in ((segments, "2024-04-01"), (profiles, "2025-07-31"), (other, "2024-04-01")):
        assert route.call_count == 1
        headers = route.calls.last.request.headers
        assert headers["amperity-tenant"] == "acme"
        assert headers["api-version"] == version
        assert headers.get_list("api-version") == [version]


async def test_unstable_only_operation_is_refused_before_sending_at_a_stable_version(
    router: respx.Router, clock: ManualClock
) -> None:
    drafts = router.get("/campaign-drafts").respond(200, json=PAGE)
    client = generated_client(make_transport(router, clock))
    with pytest.raises(UnstableOperationError, match="list_campaign_draft.*unstable") as caught:
        await list_campaign_draft.asyncio_detailed(client=client)
    assert caught.value.api_version == "2024-04-01"
    assert drafts.call_count == 0

    unstable = generated_client(
        make_transport(router, clock, versions={**VERSIONS, "control-plane": "unstable"})
    )
    response = await list_campaign_draft.asyncio_detailed(client=unstable)
    assert response.status_code == 200
    assert drafts.call_count == 1
    assert drafts.calls.last.request.headers["api-version"] == "unstable"


# retries of idempotent requests


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_get_is_retried_on_transient_statuses(
    router: respx.Router, clock: ManualClock, status: int
) -> None:
    script = Script(
        clock,
        httpx.Response(status, json={"status": status, "message": "busy"}),
        httpx.Response(200, json=PAGE),
    )
    router.get("/segments").mock(side_effect=script)
    transport = make_transport(router, clock)
    client = generated_client(transport)
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 200
    assert script.calls == 2
    assert transport.stats.requests == 2 and transport.stats.retries == 1
    assert transport.stats.rate_limited == (1 if status == 429 else 0)
    assert transport.stats.server_errors == (1 if status >= 500 else 0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
async def test_get_is_not_retried_on_client_errors(
    router: respx.Router, clock: ManualClock, status: int
) -> None:
    script = Script(clock, httpx.Response(status, json={"status": status, "message": "no"}))
    router.get("/segments").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == status
    assert script.calls == 1


async def test_get_is_retried_on_timeouts_and_dropped_connections(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(
        clock,
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.Response(200, json=PAGE),
    )
    router.get("/segments").mock(side_effect=script)
    transport = make_transport(router, clock)
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=generated_client(transport)))
    assert response.status_code == 200
    assert script.calls == 5
    assert transport.stats.errors == 4 and transport.stats.retries == 4
    assert transport.stats.by_operation["list_segment"].errors == 4


async def test_backoff_is_exponential_with_full_jitter_and_capped(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(clock, httpx.Response(503, json={"status": 503, "message": "down"}))
    router.get("/segments").mock(side_effect=script)
    policy = RetryPolicy(max_retries=6, backoff_base=0.5, backoff_cap=8.0)
    client = generated_client(make_transport(router, clock, retry=policy, random=lambda: 0.5))
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 503, "the last response is returned once retries are exhausted"
    assert script.calls == 7
    waits = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    # random() * min(cap, base * 2**n) with random() = 0.5
    assert waits == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0, 4.0])


async def test_retry_after_seconds_wins_over_backoff_and_reaches_the_limiter(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(
        clock,
        httpx.Response(429, headers={"Retry-After": "3"}, json={"status": 429, "message": "slow down"}),
        httpx.Response(503, json={"status": 503, "message": "down"}),
        httpx.Response(200, json=PAGE),
    )
    router.get("/segments").mock(side_effect=script)
    limiter = RecordingLimiter()
    client = generated_client(make_transport(router, clock, limiter=limiter))
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 200
    assert script.times == pytest.approx([0.0, 3.0, 4.0])  # then backoff for retry 2: 0.5 * 2
    assert limiter.acquired == 3, "every attempt, retries included, takes a token"
    assert limiter.rate_limited == [3.0]


async def test_retry_after_as_an_http_date(router: respx.Router, clock: ManualClock) -> None:
    now = clock.time()
    when = email.utils.formatdate(now + 7, usegmt=True)
    script = Script(
        clock,
        httpx.Response(503, headers={"Retry-After": when}, json={"status": 503, "message": "maintenance"}),
        httpx.Response(200, json=PAGE),
    )
    router.get("/segments").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert script.times == pytest.approx([0.0, 7.0])


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 60, usegmt=True), now) == 60.0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(unreadable, now) is None


async def test_a_retry_after_beyond_max_retry_after_is_not_waited_for(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(
        clock, httpx.Response(429, headers={"Retry-After": "3600"}, json={"status": 429, "message": "x"})
    )
    router.get("/segments").mock(side_effect=script)
    limiter = RecordingLimiter()
    client = generated_client(
        make_transport(router, clock, limiter=limiter, retry=RetryPolicy(max_retry_after=60))
    )
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 429
    assert script.calls == 1
    assert limiter.rate_limited == [None], "the limiter hears of the 429 but is not paused"


async def test_no_retry_starts_past_the_deadline(router: respx.Router, clock: ManualClock) -> None:
    script = Script(clock, httpx.Response(503, json={"status": 503, "message": "down"}))
    router.get("/segments").mock(side_effect=script)
    client = generated_client(
        make_transport(router, clock, retry=RetryPolicy(max_retries=10), bounds=Bounds(deadline=3.0))
    )
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 503
    # waits 0.5, 1 (t=1.5); the next wait of 2 would end at 3.5 > 3
    assert script.times == pytest.approx([0.0, 0.5, 1.5])


async def test_exhausted_timeouts_raise_api_timeout_error_chained_to_the_httpx_error(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(clock, httpx.ReadTimeout("read timed out"))
    router.get("/segments").mock(side_effect=script)
    client = generated_client(make_transport(router, clock, retry=RetryPolicy(max_retries=2)))
    with pytest.raises(APITimeoutError, match="ReadTimeout.*gave up after 3 attempts") as caught:
        await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.method == "GET" and caught.value.url.endswith("/api/segments")
    assert script.calls == 3


async def test_exhausted_connection_errors_raise_api_connection_error(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(clock, httpx.ConnectError("connection refused"))
    router.get("/segments").mock(side_effect=script)
    client = generated_client(
        make_transport(router, clock, retry=RetryPolicy(max_retries=1), bounds=Bounds(deadline=100))
    )
    with pytest.raises(APIConnectionError) as caught:
        await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert not isinstance(caught.value, APITimeoutError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert script.calls == 2


# requests that must never be sent twice


def run_body() -> WorkflowRunRequest:
    return WorkflowRunRequest(config_id="cg-1")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_post_is_not_resent_after_a_server_error(
    router: respx.Router, clock: ManualClock, status: int
) -> None:
    script = Script(
        clock,
        httpx.Response(status, json={"status": status, "message": "x"}),
        httpx.Response(201, json=WORKFLOW),
    )
    router.post("/workflow/runs").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    response = await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
    assert response.status_code == status
    assert script.calls == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_post_is_not_resent_when_it_may_have_reached_the_server(
    router: respx.Router, clock: ManualClock, failure: Exception
) -> None:
    script = Script(clock, failure, httpx.Response(201, json=WORKFLOW))
    router.post("/workflow/runs").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    with pytest.raises(APIConnectionError, match="not resent") as caught:
        await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
    assert caught.value.__cause__ is failure
    assert isinstance(caught.value, APITimeoutError) == isinstance(failure, httpx.TimeoutException)
    assert script.calls == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.PoolTimeout("pool full"),
    ],
)
async def test_post_is_resent_when_it_never_left_the_client(
    router: respx.Router, clock: ManualClock, failure: Exception
) -> None:
    script = Script(clock, failure, httpx.Response(201, json=WORKFLOW))
    router.post("/workflow/runs").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    response = await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
    assert response.status_code == 201
    assert script.calls == 2
    assert script.requests[0].content == script.requests[1].content == b'{"config_id":"cg-1"}'


async def test_post_is_resent_after_429(router: respx.Router, clock: ManualClock) -> None:
    script = Script(
        clock, httpx.Response(429, json={"status": 429, "message": "x"}), httpx.Response(201, json=WORKFLOW)
    )
    router.post("/workflow/runs").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    response = await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
    assert response.status_code == 201
    assert script.calls == 2


def aiohttp_mapped(aiohttp_error: Exception) -> Callable[[httpx.Request], httpx.Response]:
    """What httpx-aiohttp raises: most aiohttp failures become httpx.ConnectTimeout."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout(str(aiohttp_error)) from aiohttp_error

    return fail


@pytest.mark.parametrize(
    ("aiohttp_error", "resent", "error_type"),
    [
        (aiohttp.ServerDisconnectedError(), False, APIConnectionError),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), False, APITimeoutError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), False, APIConnectionError),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), True, None),
    ],
)
async def test_post_over_aiohttp_is_judged_by_what_aiohttp_saw(
    router: respx.Router,
    clock: ManualClock,
    aiohttp_error: Exception,
    resent: bool,
    error_type: type[Exception] | None,
) -> None:
    script = Script(clock, aiohttp_mapped(aiohttp_error), httpx.Response(201, json=WORKFLOW))
    client = generated_client(make_transport(script, clock))
    if resent:
        response = await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
        assert response.status_code == 201
        assert script.calls == 2
    else:
        assert error_type is not None
        with pytest.raises(error_type, match="not resent") as caught:
            await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
        assert type(caught.value) is error_type
        assert script.calls == 1


# bodies and connections


class TrackedStream(httpx.AsyncByteStream):
    def __init__(self, body: bytes = b"{}", *, fail_after_first_chunk: bool = False) -> None:
        self.body, self.fail = body, fail_after_first_chunk
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[:5]
        if self.fail:
            raise httpx.ReadError("connection dropped mid-body")
        yield self.body[5:]

    async def aclose(self) -> None:
        self.closed = True


async def test_discarded_attempts_are_closed(router: respx.Router, clock: ManualClock) -> None:
    streams = [TrackedStream(), TrackedStream(), TrackedStream(b'{"data": [], "next_token": ""}')]
    script = Script(
        clock,
        *(
            lambda request, s=s, st=st: httpx.Response(st, stream=s)
            for s, st in zip(streams, (503, 429, 200), strict=True)
        ),
    )
    router.get("/segments").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=client))
    assert response.status_code == 200 and response.parsed is not None
    assert [s.closed for s in streams] == [True, True, True]


async def test_a_get_whose_body_breaks_off_is_retried(router: respx.Router, clock: ManualClock) -> None:
    broken = TrackedStream(b'{"data": [], "next_token": ""}', fail_after_first_chunk=True)
    script = Script(clock, lambda request: httpx.Response(200, stream=broken), httpx.Response(200, json=PAGE))
    router.get("/segments").mock(side_effect=script)
    transport = make_transport(router, clock)
    response = await drive(clock, lambda: list_segment.asyncio_detailed(client=generated_client(transport)))
    assert response.status_code == 200 and response.parsed is not None
    assert script.calls == 2
    assert broken.closed
    assert transport.stats.errors == 1


async def test_a_post_whose_body_breaks_off_is_not_resent(router: respx.Router, clock: ManualClock) -> None:
    broken = TrackedStream(b'{"id": "wf-1", "state": "running"}', fail_after_first_chunk=True)
    script = Script(
        clock, lambda request: httpx.Response(201, stream=broken), httpx.Response(201, json=WORKFLOW)
    )
    router.post("/workflow/runs").mock(side_effect=script)
    client = generated_client(make_transport(router, clock))
    with pytest.raises(APIConnectionError, match="not resent"):
        await drive(clock, lambda: run_workflow.asyncio_detailed(client=client, body=run_body()))
    assert script.calls == 1
    assert broken.closed


class StalledStream(TrackedStream):
    """Sends a first chunk, then nothing: the body never completes."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"data": '
        await anyio.Event().wait()


async def test_cancelling_a_request_while_its_body_streams_in_closes_the_response(
    router: respx.Router, clock: ManualClock
) -> None:
    stalled = StalledStream()
    router.get("/segments").mock(side_effect=lambda request: httpx.Response(200, stream=stalled))
    client = generated_client(make_transport(router, clock))

    async def call() -> None:
        await list_segment.asyncio_detailed(client=client)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await clock.advance(0)
        assert not stalled.closed
        tg.cancel_scope.cancel()
    assert stalled.closed


async def test_a_streamed_request_body_is_buffered_so_that_a_retry_sends_it_again(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(
        clock, httpx.Response(429, json={"status": 429, "message": "x"}), httpx.Response(201, json=WORKFLOW)
    )
    router.post("/workflow/runs").mock(side_effect=script)
    http = httpx.AsyncClient(base_url=BASE_URL, transport=make_transport(router, clock))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"config_id": '
        yield b'"cg-1"}'

    response = await drive(clock, lambda: http.post("/workflow/runs", content=chunks()))
    assert response.status_code == 201
    assert [r.content for r in script.requests] == [b'{"config_id": "cg-1"}'] * 2


async def test_closing_the_transport_closes_the_inner_one(clock: ManualClock) -> None:
    class Inner(httpx.AsyncBaseTransport):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    inner = Inner()
    transport = AmperityTransport(
        inner,
        tenant="acme",
        api_versions=VERSIONS,
        limiter_for=lambda op: None,
        clock=clock,
    )
    async with transport:
        pass
    assert inner.closed


# rate limits through the transport


async def test_two_clients_given_one_bucket_share_its_budget(
    router: respx.Router, clock: ManualClock
) -> None:
    script = Script(clock, httpx.Response(200, json=PAGE))
    router.get("/segments").mock(side_effect=script)
    bucket = TokenBucket(10, clock=clock)
    clients = [generated_client(make_transport(router, clock, limiter=bucket)) for _ in range(2)]

    async def calls(client: Client) -> None:
        for _ in range(5):
            await list_segment.asyncio_detailed(client=client)

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(calls, client)
        await clock.advance(10)
    assert script.times == pytest.approx([k * 0.1 for k in range(10)], abs=1e-9)


async def test_a_429_slows_the_shared_bucket_down(router: respx.Router, clock: ManualClock) -> None:
    script = Script(
        clock, httpx.Response(429, json={"status": 429, "message": "x"}), httpx.Response(200, json=PAGE)
    )
    router.get("/segments").mock(side_effect=script)
    bucket = TokenBucket(10, clock=clock)
    client = generated_client(make_transport(router, clock, limiter=bucket, random=lambda: 0.0))
    await drive(clock, lambda: list_segment.asyncio_detailed(client=client), until=0.2)
    # The retry (no backoff with random()=0) waited for the next token at the halved rate, 5/s,
    # climbing back by 0.5/s each second: one token has flowed in when 5t + t**2/4 = 1.
    assert script.times == pytest.approx([0.0, 2 * (math.sqrt(26) - 5)])
    assert bucket.current_rate == pytest.approx(5.1)


# logs and deprecation


async def test_each_retry_is_logged_without_headers_or_tokens(
    router: respx.Router, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amperity_async")
    script = Script(
        clock,
        httpx.Response(503, json={"status": 503, "message": "down"}),
        httpx.ReadTimeout("read timed out"),
        httpx.Response(429, headers={"Retry-After": "2"}, json={"status": 429, "message": "x"}),
        httpx.Response(200, json=PAGE),
    )
    router.get("/segments").mock(side_effect=script)
    http = httpx.AsyncClient(base_url=BASE_URL, transport=make_transport(router, clock))
    response = await drive(
        clock,
        lambda: http.get("/segments", params={"limit": 5}, headers={"Authorization": "Bearer sekrit-token"}),
    )
    assert response.status_code == 200
    retries = [r for r in caplog.records if r.name == "amperity_async" and "retrying" in r.getMessage()]
    assert [r.getMessage() for r in retries] == [
        "retrying GET /api/segments after status 503 (retry 1 of 5) in 0.500s",
        "retrying GET /api/segments after ReadTimeout (retry 2 of 5) in 1.000s",
        "retrying GET /api/segments after status 429 (retry 3 of 5) in 2.000s",
    ]
    assert [r.levelno for r in retries] == [logging.WARNING, logging.WARNING, logging.INFO]
    assert all(
        "sekrit" not in r.getMessage() and "uthorization" not in r.getMessage() for r in caplog.records
    )


async def test_deprecation_and_sunset_warn_once_per_operation_and_log_the_dates(
    router: respx.Router, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Deprecation": "Mon, 01 Jun 2026 00:00:00 GMT", "Sunset": "Tue, 01 Dec 2026 00:00:00 GMT"}
    router.get("/segments").respond(200, json=PAGE, headers=headers)
    router.get("/campaigns").respond(200, json=PAGE, headers={"Sunset": headers["Sunset"]})
    router.get("/indexes/ix-1/profiles").respond(200, json=PAGE)
    client = generated_client(make_transport(router, clock))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            await list_segment.asyncio_detailed(client=client)
            await list_campaign.asyncio_detailed(client=client)
            await list_profiles.asyncio_detailed(id="ix-1", client=client)
    deprecations = [w.message for w in caught if isinstance(w.message, AmperityDeprecationWarning)]
    assert [(d.operation, d.deprecation, d.sunset) for d in deprecations] == [
        ("list_segment", headers["Deprecation"], headers["Sunset"]),
        ("list_campaign", None, headers["Sunset"]),
    ]
    logged = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(logged) == 2
    assert (
        "Sunset: Tue, 01 Dec 2026 00:00:00 GMT" in logged[0] and "Deprecation: Mon, 01 Jun 2026" in logged[0]
    )


def test_retry_policy_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(max_retry_after=-1.0)
    with pytest.raises(ValueError, match="deadline"):
        Bounds(deadline=-1.0)
    with pytest.raises(ValueError, match="timeout"):
        Bounds(timeout=0)
    with pytest.raises(ValueError, match="max_response_bytes"):
        Bounds(max_response_bytes=0)


# the default transport against a real server on 127.0.0.1


class LoopbackServer:
    """A tiny HTTP/1.1 server; ``modes`` says how to treat each request in turn (the last repeats):
    "ok" answers, "drop" closes the connection without answering, "truncate" sends half a body."""

    def __init__(self, *modes: str) -> None:
        self.modes = list(modes)
        self.requests: list[dict[str, str]] = []
        self.port = 0

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
                }
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += await stream.receive()
                buffer = buffer[length:]
                self.requests.append({"request-line": lines[0], **headers})
                mode = self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]
                body = b'{"data": [], "next_token": ""}'
                if mode == "drop":
                    return
                if mode == "truncate":
                    await stream.send(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
                    )
                    return
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(body)
                    + body
                )


async def with_server(server: LoopbackServer, call: Callable[[str], Awaitable[T]]) -> T:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    results: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            results.append(await call(f"http://127.0.0.1:{server.port}/api"))
        except Exception as exc:
            errors.append(exc)
        tg.cancel_scope.cancel()
    if errors:
        raise errors[0]
    return results[0]


def loopback_transport(retry: RetryPolicy) -> AmperityTransport:
    return AmperityTransport(
        default_inner_transport(max_connections=10),
        tenant="acme",
        api_versions=VERSIONS,
        limiter_for=lambda op: None,
        retry=retry,
    )


async def test_default_transport_is_aiohttp_on_asyncio_and_httpx_on_trio(anyio_backend: str) -> None:
    server = LoopbackServer("ok")
    inner = default_inner_transport()

    async def call(base_url: str) -> httpx.Response:
        transport = AmperityTransport(
            inner, tenant="acme", api_versions=VERSIONS, limiter_for=lambda op: None
        )
        async with httpx.AsyncClient(base_url=base_url, transport=transport) as http:
            return await http.get("/segments")

    response = await with_server(server, call)
    assert response.status_code == 200 and response.json() == PAGE
    assert server.requests[0]["request-line"] == "GET /api/segments HTTP/1.1"
    assert (
        server.requests[0]["amperity-tenant"] == "acme" and server.requests[0]["api-version"] == "2024-04-01"
    )
    chosen = type(inner.chosen).__name__  # type: ignore[attr-defined]
    assert chosen == ("AiohttpTransport" if anyio_backend == "asyncio" else "AsyncHTTPTransport")


async def test_real_dropped_connections_retry_a_get_but_never_resend_a_post() -> None:
    no_wait = RetryPolicy(max_retries=2, backoff_base=0)

    async def get(base_url: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url, transport=loopback_transport(no_wait)) as http:
            return await http.get("/segments")

    server = LoopbackServer("drop", "truncate", "ok")
    response = await with_server(server, get)
    assert response.json() == PAGE
    assert len(server.requests) == 3

    async def post(base_url: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url, transport=loopback_transport(no_wait)) as http:
            return await http.post("/workflow/runs", json={"config_id": "cg-1"})

    server = LoopbackServer("drop", "ok")
    with pytest.raises(APIConnectionError, match="not resent"):
        await with_server(server, post)
    assert len(server.requests) == 1


async def test_real_refused_connection_resends_a_post_then_gives_up() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    transport = loopback_transport(RetryPolicy(max_retries=2, backoff_base=0))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api", transport=transport) as http:
        with pytest.raises(APIConnectionError, match="gave up after 3 attempts") as caught:
            await http.post("/workflow/runs", json={"config_id": "cg-1"})
    assert not isinstance(caught.value, APITimeoutError)
    assert transport.stats.requests == 3 and transport.stats.errors == 3
