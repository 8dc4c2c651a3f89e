"""The fast path (requests built in one piece, sent over aiohttp) and the httpx path side by side.

Every test here runs the same calls through both paths of one client type (``fast_path=True`` and
``False``) against the same server, and asserts they are indistinguishable to the server and to the
caller: the bytes of the request line, headers and body, the answers, the typed errors, the
retries and their statistics, the bounds. The fast path is asyncio's; on trio the client takes the
httpx path whatever ``fast_path`` says.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.abc
import httpx
import pytest
from client_support import DEFAULT_TOKEN, HANG_GUARD, client_for
from hostile_server import PAGE, Request, gzip_bomb, hostile_server, response
from ports import refused_port

from amperity_async import AmperityClient, ClientCredentials
from amperity_async.api.audit_events import list_events
from amperity_async.api.indexes import list_indexes
from amperity_async.api.profiles import list_profiles
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import run_workflow
from amperity_async.custom.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
)
from amperity_async.custom.fastwire import Answer
from amperity_async.models import ProfileFilter, WorkflowRunRequest

pytestmark = pytest.mark.anyio

BOTH = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "httpx"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the fast path is asyncio's (aiohttp); trio always takes the httpx path


def tenant_client(tenant: Any, **options: Any) -> AmperityClient:
    settings: dict[str, Any] = {
        "tenant": tenant.config.tenant,
        "auth": ClientCredentials(tenant.client_id, tenant.client_secret),
        "base_url": tenant.base_url,
    }
    return AmperityClient(**(settings | options))


def segments_page(count: int, cursor: str | None) -> bytes:
    page: dict[str, Any] = {
        "data": [{"id": f"seg-{i}", "name": f"S {i}", "status": "active"} for i in range(count)]
    }
    if cursor is not None:
        page["next_token"] = cursor
    return json.dumps(page).encode()


async def recorded(fast_path: bool, call: Any, answer: bytes = PAGE) -> Request:
    """The request one call sends (answered with ``answer``)."""

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(200, answer))
        return True

    async with hostile_server(handler) as server, client_for(server.base_url, fast_path=fast_path) as client:
        with anyio.fail_after(HANG_GUARD):
            await call(client)
    assert len(server.requests) == 1
    return server.requests[0]


# 1. the same request on the wire


async def test_both_paths_send_the_same_request_line_headers_and_body() -> None:
    since = datetime(2026, 2, 1, 12, 30, tzinfo=UTC)

    async def events(client: AmperityClient) -> None:
        await client.call(list_events, limit=5, next_token="a b/c+d=é", happened_from=since, with_total=True)

    async def profiles(client: AmperityClient) -> None:
        await client.call(
            list_profiles, "idx/1 é", filter_=ProfileFilter(first_name="Dan iel", city="Oslo&Co")
        )

    async def run(client: AmperityClient) -> None:
        await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-ü 1"))

    created = (
        b'{"id": "wf-1", "state": "started", "type": "t", "name": "n", "tenant": "acme", '
        b'"created_at": "2026-06-19T04:00:18Z"}'
    )
    for call, answer in ((events, PAGE), (profiles, PAGE), (run, created)):
        fast, generic = await recorded(True, call, answer), await recorded(False, call, answer)
        # httpx-aiohttp lets yarl unescape what a query may hold as it is ('/', ':'): the same values.
        assert (fast.method, fast.body) == (generic.method, generic.body)
        assert urlsplit(fast.path).path == urlsplit(generic.path).path
        assert parse_qsl(urlsplit(fast.path).query) == parse_qsl(urlsplit(generic.path).query)
        for name in ("amperity-tenant", "api-version", "authorization", "user-agent", "content-type"):
            assert fast.headers.get(name) == generic.headers.get(name), name
        assert fast.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
        assert "gzip" in fast.headers["accept-encoding"]


async def test_the_fast_path_quotes_the_query_as_httpx_does() -> None:
    async def events(client: AmperityClient) -> None:
        await client.call(list_events, next_token="a b/c+d=é&x", with_total=False, limit=3)

    fast = await recorded(True, events)
    sent = "/api/audit-events?limit=3&next_token=a+b%2Fc%2Bd%3D%C3%A9%26x&with_total=false"
    assert fast.path == sent
    params = {"limit": 3, "next_token": "a b/c+d=é&x", "with_total": False}
    assert sent.endswith(str(httpx.QueryParams(params)))


# 2. the same answers


@BOTH
@pytest.mark.fake_tenant(rows=230, indexes=1, profiles_per_index=130, seed=5)
async def test_call_pages_and_paginate_answer_the_same_on_both_paths(
    fake_tenant: Any, fast_path: bool
) -> None:
    async with tenant_client(fake_tenant, fast_path=fast_path) as client, tenant_client(fake_tenant) as fast:
        assert (client._fast is not None) is fast_path
        index = (await client.call(list_indexes)).data[0].id
        pages = [page async for page in client.pages(list_segment, limit=50)]
        assert [len(p) for p in pages] == [50, 50, 50, 50, 30]
        items = [s async for s in client.paginate(list_segment, limit=50)]
        assert [s.id for s in items] == [s["id"] for p in pages for s in p.raw]
        profiles = [p async for p in client.paginate(list_profiles, index, limit=40)]
        reference = [p async for p in fast.paginate(list_profiles, index, limit=40)]
        assert [p.to_dict() for p in profiles] == [p.to_dict() for p in reference]
        assert len(profiles) == 130
        first = await client.call(list_segment, limit=7, with_total=True)
        assert first.total == 230 and len(first.data) == 7 and first.next_token
        assert client.stats.by_operation["list_segment"].requests == 5 + 5 + 1


async def test_the_fast_path_answers_carry_what_the_caller_needs() -> None:
    body = segments_page(3, "c-1")

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(200, body, {"X-Request-Id": "r-7", "Deprecation": "@1", "Sunset": "x"}))
        return True

    async with hostile_server(handler) as server, client_for(server.base_url) as client:
        assert client._fast is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            page = await client.call(list_segment)
        answer = await client._fast.send(
            client.operation(list_segment), {"method": "get", "url": "/api/segments"}
        )
    assert [s.id for s in page.data] == ["seg-0", "seg-1", "seg-2"] and page.next_token == "c-1"
    assert isinstance(answer, Answer) and answer.content == body and answer.headers["x-request-id"] == "r-7"
    converted = answer.as_httpx()
    assert converted.status_code == 200 and converted.content == body and converted.request.method == "GET"
    assert any("deprecated" in str(w.message) for w in caught), "Deprecation announced once per operation"


async def test_unknown_fields_are_kept_on_both_paths() -> None:
    page = b'{"data": [{"id": "s-1", "name": "n", "status": "a", "color": "red"}], "extra": {"x": 1}}'
    for fast_path in (True, False):

        async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
            await stream.send(response(200, page))
            return True

        async with (
            hostile_server(handler) as server,
            client_for(server.base_url, fast_path=fast_path) as client,
        ):
            answer = await client.call(list_segment)
            [raw] = [p async for p in client.pages(list_segment)]
        assert answer.data[0]["color"] == "red" and answer["extra"] == {"x": 1}
        assert raw.raw == [{"id": "s-1", "name": "n", "status": "a", "color": "red"}]


# 3. the same failures, bounds and retries


@BOTH
async def test_5xx_then_success_is_retried_and_counted_alike(fast_path: bool) -> None:
    async def flaky(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if len(server.requests) < 3:
            await stream.send(response(503, b'{"status": 503, "message": "busy"}', {"Retry-After": "0"}))
        else:
            await stream.send(response(200, segments_page(2, None)))
        return True

    async with (
        hostile_server(flaky) as server,
        client_for(server.base_url, fast_path=fast_path, max_retries=3) as client,
    ):
        page = await client.call(list_segment)
        stats = client.stats
    assert len(page.data) == 2 and len(server.requests) == 3
    assert (stats.requests, stats.retries, stats.server_errors) == (3, 2, 2)


@BOTH
async def test_429_with_a_long_retry_after_fails_at_once(fast_path: bool) -> None:
    async def limited(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(429, b'{"status": 429, "message": "slow down"}', {"Retry-After": "3600"}))
        return True

    async with hostile_server(limited) as server, client_for(server.base_url, fast_path=fast_path) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.call(list_segment)
    assert caught.value.retry_after == 3600 and len(server.requests) == 1
    assert isinstance(caught.value.response, httpx.Response) and caught.value.response.status_code == 429


@BOTH
async def test_a_400_is_typed_with_its_body_request_id_and_scrubbed_secret(fast_path: bool) -> None:
    echo = f'{{"status": 400, "message": "bad token {DEFAULT_TOKEN}", "request_id": "r-1"}}'.encode()

    async def bad(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(400, echo, {"Content-Encoding": "identity"}))
        return True

    async with hostile_server(bad) as server, client_for(server.base_url, fast_path=fast_path) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.call(list_segment, limit=3)
    error = caught.value
    assert error.request_id == "r-1" and error.url == f"{server.base_url}/segments?limit=3"
    assert (
        DEFAULT_TOKEN not in str(error) and DEFAULT_TOKEN not in error.body and "bad token" in error.message
    )


@BOTH
async def test_401_renews_the_token_once_and_replays_once(fast_path: bool) -> None:
    issued: list[str] = []

    class Rotating:
        async def fetch(self) -> Any:
            from amperity_async import Secret, Token

            issued.append(f"token-{len(issued)}")
            return Token(access_token=Secret(issued[-1]), expires_at=None)

    async def picky(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.headers["authorization"] == "Bearer token-1":
            await stream.send(response(200, segments_page(1, None)))
        else:
            await stream.send(response(401, b'{"status": 401, "message": "expired"}'))
        return True

    async with (
        hostile_server(picky) as server,
        client_for(
            server.base_url, fast_path=fast_path, auth=Rotating(), unauthorized_refresh_interval=0.001
        ) as client,
    ):
        page = await client.call(list_segment)
        assert len(page.data) == 1
        assert [r.headers["authorization"] for r in server.requests] == ["Bearer token-0", "Bearer token-1"]
        server.handler = _always(response(401, b'{"status": 401, "message": "revoked"}'))
        await anyio.sleep(0.01)  # past unauthorized_refresh_interval: this 401 may renew again
        with pytest.raises(AuthenticationError):
            await client.call(list_segment)
    assert len(server.requests) == 4, "one replay, never a loop"


def _always(answer: bytes) -> Any:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(answer)
        return True

    return handler


@BOTH
async def test_a_dripping_answer_hits_the_attempt_timeout(fast_path: bool) -> None:
    async def drip(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while True:
            await stream.send(b" ")
            await anyio.sleep(0.05)

    async with (
        hostile_server(drip) as server,
        client_for(server.base_url, fast_path=fast_path, timeout=0.3, max_retries=0) as client,
    ):
        with anyio.fail_after(HANG_GUARD), pytest.raises(APITimeoutError) as caught:
            await client.call(list_segment)
    assert caught.value.bound == "timeout" and caught.value.kind == "timeout"


@BOTH
async def test_bodies_are_capped_after_inflating(fast_path: bool) -> None:
    bomb = gzip_bomb(5_000_000)

    async def inflating(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(200, bomb, {"Content-Encoding": "gzip"}))
        return True

    async def endless(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            await stream.send(b"4000\r\n" + b" " * 0x4000 + b"\r\n")

    for handler in (inflating, endless):
        async with (
            hostile_server(handler) as server,
            client_for(server.base_url, fast_path=fast_path, max_response_bytes=1_000_000) as client,
        ):
            with anyio.fail_after(HANG_GUARD), pytest.raises(ResponseTooLargeError):
                await client.call(list_segment)
        assert len(server.requests) == 1, "a body too large is not fetched again"


@BOTH
async def test_a_dropped_connection_is_retried_and_a_refused_one_named(fast_path: bool) -> None:
    async def drop_first(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if len(server.requests) == 1:
            await stream.send(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"data"')
            return False
        await stream.send(response(200, segments_page(1, None)))
        return True

    async with (
        hostile_server(drop_first) as server,
        client_for(server.base_url, fast_path=fast_path) as client,
    ):
        page = await client.call(list_segment)
        assert len(page.data) == 1 and client.stats.errors == 1 and client.stats.retries == 1
    with refused_port() as port:
        async with client_for(f"http://127.0.0.1:{port}/api", fast_path=fast_path, max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.call(list_segment)
    assert caught.value.kind == "refused"


@BOTH
async def test_deep_and_broken_json_are_validation_errors(fast_path: bool) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"data": [{"id": 5}]}', b"<html>"):
        async with (
            hostile_server(_always(response(200, body))) as server,
            client_for(server.base_url, fast_path=fast_path) as client,
        ):
            with pytest.raises(ResponseValidationError):
                await client.call(list_segment)


@BOTH
async def test_a_per_call_deadline_bounds_the_fast_path_too(fast_path: bool) -> None:
    async def slow(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await anyio.sleep(5)
        return False

    async with hostile_server(slow) as server, client_for(server.base_url, fast_path=fast_path) as client:
        with anyio.fail_after(HANG_GUARD), client.within(0.3), pytest.raises(APITimeoutError) as caught:
            await client.call(list_segment)
    assert caught.value.bound == "deadline"


# 4. who takes which path


async def test_a_transport_given_to_the_client_sees_every_request() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=segments_page(1, None))

    async with client_for("https://app.amperity.com/api", transport=httpx.MockTransport(handler)) as client:
        assert client._fast is None
        await client.call(list_segment)
        assert [page async for page in client.pages(list_segment)]
    assert seen == ["/api/segments", "/api/segments"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_takes_the_httpx_path(anyio_backend: str) -> None:
    async with (
        hostile_server(_always(response(200, segments_page(2, None)))) as server,
        client_for(server.base_url) as client,
    ):
        page = await client.call(list_segment)
        assert client._fast is not None and not client._fast.takes({"method": "get", "url": "/api/segments"})
    assert len(page.data) == 2 and len(server.requests) == 1


# 5. pages fetched ahead


async def test_a_prefetch_in_flight_is_cancelled_when_the_client_closes() -> None:
    async def never_second(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if "next_token" in request.path:
            await anyio.sleep_forever()  # the prefetch hangs until it is cancelled
        await stream.send(response(200, segments_page(2, "more")))
        return True

    async with hostile_server(never_second) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no "coroutine was never awaited"
            async with client_for(server.base_url) as client:
                pages = client.pages(list_segment)
                assert len(await pages.__anext__()) == 2
                with anyio.fail_after(5):
                    while len(server.requests) < 2:
                        await anyio.sleep(0.01)  # the prefetch reached the server
            with anyio.fail_after(5):
                assert await pages._ahead.wait() is None  # type: ignore[union-attr]
    assert len(server.requests) == 2


async def test_a_prefetch_not_yet_started_is_dropped_with_its_iterator() -> None:
    async with hostile_server(_always(response(200, segments_page(2, "more")))) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            async with client_for(server.base_url) as client:
                async for page in client.pages(list_segment):
                    assert len(page) == 2
                    break  # the iterator goes, and the fetch of the next page with it
                await anyio.sleep(0.1)
    assert len(server.requests) == 1


@pytest.mark.fake_tenant(rows=300, seed=3)
async def test_prefetched_pages_are_checked_in_order_and_read_when_asked_for(fake_tenant: Any) -> None:
    async with tenant_client(fake_tenant, rate_limit=None) as client:
        pages = client.pages(list_segment, limit=100)
        first = await pages.__anext__()
        assert pages.next_token is not None and pages._ahead is not None  # the second is on its way
        rest = [page async for page in pages]
    ids = [item["id"] for page in (first, *rest) for item in page.raw]
    assert len(ids) == len(set(ids)) == 300 and pages.next_token is None


@BOTH
async def test_an_outer_cancel_scope_passes_through_an_attempt_and_the_attempt_bound_stays_its_own(
    fast_path: bool,
) -> None:
    async def slow(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await anyio.sleep(5)
        return False

    async with (
        hostile_server(slow) as server,
        client_for(server.base_url, fast_path=fast_path, timeout=2, max_retries=0) as client,
    ):
        with anyio.fail_after(HANG_GUARD), anyio.move_on_after(0.2) as outer:
            await client.call(list_segment)
        assert outer.cancelled_caught, "the caller's scope ended the call, not a timeout"
        with anyio.fail_after(HANG_GUARD) as guard, pytest.raises(APITimeoutError) as caught:
            with anyio.move_on_after(30):
                await client.call(list_segment)
        assert caught.value.bound == "timeout" and not guard.cancelled_caught
        page = await _answer_after(client, server)
    assert len(page.data) == 1, "the task is not left cancelled after a timeout"


async def _answer_after(client: AmperityClient, server: Any) -> Any:
    server.handler = _always(response(200, segments_page(1, None)))
    return await client.call(list_segment)
