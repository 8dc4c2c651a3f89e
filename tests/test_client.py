"""AmperityClient as users touch it: every layer runs, only the innermost transport is a respx router."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import httpx
import pytest
import respx

from amperity_async import AmperityClient, StaticToken
from amperity_async.api.campaigns import list_campaign_draft
from amperity_async.api.indexes import get_index
from amperity_async.api.profiles import list_profiles
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow, run_workflow
from amperity_async.custom.errors import (
    AuthenticationError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    ResponseValidationError,
    UnstableOperationError,
)
from amperity_async.models import ProfileFilter, Segment, Workflow, WorkflowRunRequest

pytestmark = pytest.mark.anyio
BASE = "https://app.amperity.com/api"


def jwt(exp: float, sub: str = "key-1") -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': sub, 'exp': int(exp)})}.c2ln"


TOKEN = jwt(time.time() + 3600)


class NoLimit:
    async def acquire(self, cost: float = 1.0) -> None:
        return None

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        return None


def make_client(router: respx.Router, **kwargs: Any) -> AmperityClient:
    options: dict[str, Any] = {
        "tenant": "acme",
        "auth": StaticToken(TOKEN),
        "transport": httpx.MockTransport(router.async_handler),
        "rate_limit": NoLimit(),
        "profile_rate_limit": NoLimit(),
        "max_retries": 2,
    }
    options.update(kwargs)
    return AmperityClient(**options)


def segment(i: int) -> dict[str, Any]:
    return {"id": f"seg-{i}", "name": f"Segment {i}", "status": "active"}


async def test_call_sends_tenant_version_and_token_headers_and_parses_the_model() -> None:
    router = respx.Router(assert_all_called=False)
    route = router.get(f"{BASE}/workflow/runs/wf-1").respond(
        200,
        json={
            "id": "wf-1",
            "state": "running",
            "type": "courier.group/run",
            "name": "Daily",
            "tenant": "acme",
            "created_at": "2026-06-19T04:00:18.764Z",
        },
    )
    profile = router.get(f"{BASE}/indexes/idx-1").respond(200, json={"id": "idx-1", "name": "loyalty"})
    async with make_client(router) as client:
        run = await client.call(get_workflow, "wf-1")
        index = await client.call(get_index.asyncio_detailed, "idx-1")
    assert isinstance(run, Workflow) and run.id == "wf-1"
    assert index.name == "loyalty"
    sent = route.calls.last.request
    assert sent.headers["amperity-tenant"] == "acme"
    assert sent.headers["api-version"] == "2024-04-01"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert profile.calls.last.request.headers["api-version"] == "2025-07-31"


async def test_raw_generated_calls_get_the_same_headers_and_token() -> None:
    router = respx.Router()
    route = router.get(f"{BASE}/segments").respond(200, json={"data": [segment(1)]})
    async with make_client(router) as client:
        page = await list_segment.asyncio(client=client.generated)
    assert page is not None and not isinstance(page, type(None))
    sent = route.calls.last.request
    assert (sent.headers["amperity-tenant"], sent.headers["api-version"]) == ("acme", "2024-04-01")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"


async def test_paginate_yields_models_across_pages_and_pages_expose_cursor_and_total() -> None:
    router = respx.Router()

    def pages(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("next_token")
        assert token != ""
        if token is None:
            return httpx.Response(
                200, json={"data": [segment(1), segment(2)], "next_token": "p2", "total": 3}
            )
        assert token == "p2"
        return httpx.Response(200, json={"data": [segment(3)], "total": 3})

    route = router.get(f"{BASE}/segments").mock(side_effect=pages)
    async with make_client(router) as client:
        names = [s.name async for s in client.paginate(list_segment, limit=2, with_total=True)]
        pager = client.pages(list_segment, limit=2, with_total=True)
        cursors = []
        async for page in pager:
            assert all(isinstance(s, Segment) for s in page.data)
            cursors.append(pager.next_token)
        resumed = [s.id async for s in client.paginate(list_segment, limit=2, start_token="p2")]
    assert names == ["Segment 1", "Segment 2", "Segment 3"]
    assert cursors == ["p2", None]
    assert pager.total == 3
    assert resumed == ["seg-3"]
    first = route.calls[0].request.url
    assert dict(first.params) == {"limit": "2", "with_total": "true"}


async def test_list_profiles_sends_each_filter_pair() -> None:
    router = respx.Router()
    route = router.get(f"{BASE}/indexes/idx-1/profiles").respond(200, json={"data": []})
    async with make_client(router) as client:
        got = [
            p
            async for p in client.paginate(
                list_profiles,
                "idx-1",
                filter_=ProfileFilter.from_dict({"first_name": "Daniel", "city": "Oslo"}),
            )
        ]
    assert got == []
    params = route.calls.last.request.url.params
    assert params["filter[first_name]"] == "Daniel" and params["filter[city]"] == "Oslo"


async def test_typed_errors_carry_status_ids_method_and_url() -> None:
    router = respx.Router()
    router.get(f"{BASE}/workflow/runs/wf-x").respond(
        404, json={"status": 404, "message": "No such workflow", "request_id": "r-1", "trace_id": "t-1"}
    )
    async with make_client(router) as client:
        with pytest.raises(NotFoundError) as info:
            await client.call(get_workflow, "wf-x")
    err = info.value
    assert (err.status_code, err.message, err.request_id, err.trace_id) == (
        404,
        "No such workflow",
        "r-1",
        "t-1",
    )
    assert err.method == "GET" and err.url.endswith("/api/workflow/runs/wf-x")


async def test_a_non_json_error_body_still_gives_a_clear_error() -> None:
    router = respx.Router()
    route = router.get(f"{BASE}/segments").respond(502, text="<html>Bad gateway from the edge</html>")
    async with make_client(router, max_retries=1) as client:
        with pytest.raises(InternalServerError) as info:
            await client.call(list_segment)
    assert "Bad gateway from the edge" in str(info.value)
    assert route.call_count == 2  # one retry of a GET


async def test_a_2xx_body_missing_a_required_field_raises_response_validation_error() -> None:
    router = respx.Router()
    router.get(f"{BASE}/segments").mock(
        side_effect=[
            httpx.Response(200, json={"data": [segment(1)], "next_token": "p2"}),
            httpx.Response(
                200, json={"data": [{"id": "seg-2", "status": "active"}]}, headers={"x-request-id": "r-9"}
            ),
        ]
    )
    seen = []
    async with make_client(router) as client:
        with pytest.raises(ResponseValidationError) as info:
            async for s in client.paginate(list_segment, prefetch=False):
                seen.append(s.id)
    assert seen == ["seg-1"]  # what was yielded stays yielded
    assert info.value.operation == "list-segment"
    assert info.value.field == "data[0].name"
    assert info.value.request_id == "r-9"


async def test_a_wrong_type_and_a_non_json_2xx_body_are_validation_errors() -> None:
    router = respx.Router()
    router.get(f"{BASE}/segments").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"id": "seg-1", "name": 5, "status": "active"}]}),
            httpx.Response(200, text="not json"),
        ]
    )
    async with make_client(router) as client:
        with pytest.raises(ResponseValidationError, match="data\\[0\\].name"):
            await client.call(list_segment)
        with pytest.raises(ResponseValidationError, match="not JSON"):
            await client.call(list_segment)


async def test_unstable_only_operation_needs_the_unstable_version() -> None:
    router = respx.Router()
    route = router.get(f"{BASE}/campaign-drafts").respond(200, json={"data": []})
    async with make_client(router) as client:
        with pytest.raises(UnstableOperationError, match="unstable"):
            await client.call(list_campaign_draft)
    assert route.call_count == 0
    async with make_client(router, api_version="unstable") as client:
        await client.call(list_campaign_draft)
    assert route.calls.last.request.headers["api-version"] == "unstable"


async def test_post_body_is_sent_and_parsed() -> None:
    router = respx.Router()
    created = {
        "id": "wf-9",
        "state": "started",
        "type": "courier.group/run",
        "name": "Run",
        "tenant": "acme",
        "created_at": "2026-06-19T04:00:18.764Z",
    }
    route = router.post(f"{BASE}/workflow/runs").respond(201, json=created)
    async with make_client(router) as client:
        run = await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-1"))
    assert run.id == "wf-9"
    assert json.loads(route.calls.last.request.content) == {"config_id": "cg-1"}


async def test_401_refreshes_once_replays_once_then_raises() -> None:
    router = respx.Router()
    route = router.get(f"{BASE}/segments").respond(401, json={"status": 401, "message": "Token expired"})

    class Counting:
        fetches = 0

        async def fetch(self) -> Any:
            from amperity_async import Secret, Token

            self.fetches += 1
            return Token(
                access_token=Secret(jwt(time.time() + 3600, sub=f"k{self.fetches}")), expires_at=None
            )

    source = Counting()
    async with make_client(router, auth=source) as client:
        with pytest.raises(AuthenticationError):
            await client.call(list_segment)
    assert route.call_count == 2
    assert source.fetches == 2


async def test_bad_arguments_and_configuration_are_clear() -> None:
    router = respx.Router()
    with pytest.raises(ConfigurationError, match="only loopback"):
        make_client(router, base_url="http://example.com/api")
    with pytest.raises(ConfigurationError, match="tenant"):
        make_client(router, tenant="")
    async with make_client(router, base_url="http://127.0.0.1:9/api") as client:
        with pytest.raises(TypeError, match="list_segment.*limit"):
            await client.call(list_segment, limt=5)
        with pytest.raises(ConfigurationError, match="not a list operation"):
            client.pages(get_workflow)
        with pytest.raises(ConfigurationError, match="unknown operation"):
            client.operation("list_nothing")


async def test_one_bucket_shared_by_two_clients() -> None:
    class Recording(NoLimit):
        def __init__(self) -> None:
            self.acquired = 0

        async def acquire(self, cost: float = 1.0) -> None:
            self.acquired += 1

    shared = Recording()
    router = respx.Router()
    router.get(f"{BASE}/segments").respond(200, json={"data": [segment(1)]})
    async with (
        make_client(router, rate_limit=shared) as a,
        make_client(router, rate_limit=shared, tenant="acme-sb") as b,
    ):
        await a.call(list_segment)
        await b.call(list_segment)
    assert shared.acquired == 2


async def test_no_log_record_or_repr_contains_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    router = respx.Router()
    router.get(f"{BASE}/segments").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"data": []})]
    )
    async with make_client(router) as client:
        await client.call(list_segment)
        text = repr(client) + repr(client.refresher)
    assert TOKEN not in text
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert any("503" in record.getMessage() for record in caplog.records)  # the retry was logged


async def test_breaking_out_of_paginate_cancels_the_prefetch_and_releases_it() -> None:
    import anyio

    release = anyio.Event()
    prefetch_started = anyio.Event()
    prefetch_finished: list[str] = []

    async def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("next_token") is None:
            return httpx.Response(200, json={"data": [segment(1), segment(2)], "next_token": "p2"})
        prefetch_started.set()
        try:
            await release.wait()  # the second page never comes unless released
            return httpx.Response(200, json={"data": [segment(3)]})
        finally:
            prefetch_finished.append("p2")

    router = respx.Router()
    route = router.get(f"{BASE}/segments").mock(side_effect=pages)
    async with make_client(router) as client:
        async for first in client.paginate(list_segment):
            assert first.id == "seg-1"
            with anyio.fail_after(5):
                await prefetch_started.wait()
            break
        with anyio.fail_after(5):
            while not prefetch_finished:
                await anyio.sleep(0.01)
    assert route.call_count == 1  # respx records only answered calls: the prefetch was cancelled unanswered
    assert prefetch_finished == ["p2"] and not release.is_set()


async def test_default_api_versions_come_from_the_operation_index() -> None:
    import copy

    from amperity_async._operations import API_VERSIONS, OPERATIONS
    from amperity_async.custom.operations import REGISTRY, OperationRegistry

    variant = copy.deepcopy(API_VERSIONS)
    variant["control-plane"]["default_version"] = "2026-01-15"
    variant["control-plane"]["versions"].append("2026-01-15")
    variant["profile"]["default_version"] = "2026-02-01"
    registry = OperationRegistry(OPERATIONS, variant)
    router = respx.Router(assert_all_called=False)
    segments = router.get(f"{BASE}/segments").respond(200, json={"data": []})
    index = router.get(f"{BASE}/indexes/idx-1").respond(200, json={"id": "idx-1", "name": "loyalty"})
    async with make_client(router, registry=registry) as client:
        assert client.api_versions == {"control-plane": "2026-01-15", "profile": "2026-02-01"}
        await client.call(list_segment)
        await client.call(get_index, "idx-1")
        await list_segment.asyncio(client=client.generated)
    assert [call.request.headers["api-version"] for call in segments.calls] == ["2026-01-15"] * 2
    assert index.calls.last.request.headers["api-version"] == "2026-02-01"

    async with make_client(router, registry=registry, profile_api_version="2025-07-31") as client:
        await client.call(get_index, "idx-1")
    assert client.api_versions["control-plane"] == "2026-01-15"
    assert index.calls.last.request.headers["api-version"] == "2025-07-31"

    default = make_client(router)
    assert default.api_versions == {api: REGISTRY.default_version(api) for api in REGISTRY.versioned_apis()}
    with pytest.raises(ConfigurationError, match="api_version must be a version date"):
        make_client(router, api_version="")
