"""What the generated functions put on the wire: for every operation called with only its required
arguments, the exact method, path and query string; nothing the caller did not give."""

from __future__ import annotations

import datetime
import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from spec_support import normalized_spec, operations

from amperity_async._operations import OPERATIONS
from amperity_async.client import AuthenticatedClient
from amperity_async.custom.errors import ConfigurationError
from amperity_async.models import KeychainKeys, KeychainLookup, StreamEvent
from amperity_async.models.error_response import ErrorResponse
from amperity_async.models.profile_filter import ProfileFilter
from amperity_async.models.workflow_run_request import WorkflowRunRequest

# Generated paths carry their API's base path (/api, /prof): they are relative to the host.
BASE_URL = "https://tenant.test"
KEYS = KeychainKeys.from_dict({"email": "customer+vip@example.com"})
START = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
END = datetime.datetime(2025, 1, 8, tzinfo=datetime.UTC)

# operationId -> (required arguments, method, path, raw query string)
REQUIRED_ONLY: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "list-events": ({}, "GET", "/api/audit-events", ""),
    "list-campaign": ({}, "GET", "/api/campaigns", ""),
    "list-campaign-draft": ({}, "GET", "/api/campaign-drafts", ""),
    "list-segment": ({}, "GET", "/api/segments", ""),
    "list-ingest-jobs": (
        {"created_from": START, "created_to": END},
        "GET",
        "/api/ingest/jobs",
        "created_from=2025-01-01T00%3A00%3A00Z&created_to=2025-01-08T00%3A00%3A00Z",
    ),
    "get-ingest-job": ({"job_id": "job-1"}, "GET", "/api/ingest/jobs/job-1", ""),
    "list-workflows": ({}, "GET", "/api/workflow/runs", ""),
    "run-workflow": ({"body": WorkflowRunRequest(config_id="cfg-1")}, "POST", "/api/workflow/runs", ""),
    "get-workflow": ({"workflow_id": "wf-1"}, "GET", "/api/workflow/runs/wf-1", ""),
    "stop-workflow": ({"workflow_id": "wf-1"}, "POST", "/api/workflow/runs/wf-1/stop", ""),
    "list-indexes": ({}, "GET", "/api/indexes", ""),
    "get-index": ({"id": "idx-1"}, "GET", "/api/indexes/idx-1", ""),
    "list-profiles": ({"id": "idx-1"}, "GET", "/api/indexes/idx-1/profiles", ""),
    "get-profile": ({"id": "idx-1", "profile_id": "p-1"}, "GET", "/api/indexes/idx-1/profiles/p-1", ""),
    # The Real-time API, under /prof.
    "send-event": (
        {"stream_id": "es-1", "body": StreamEvent.from_dict({"email": "a@example.com"})},
        "POST",
        "/prof/events/es-1",
        "",
    ),
    "lookup-profile": (
        {"collection_id": "pc-1", "keys": KEYS},
        "GET",
        "/prof/lookup/pc-1/keychain",
        "email=customer%2Bvip%40example.com",
    ),
    "lookup-profile-by-keys": (
        {"collection_id": "pc-1", "body": KeychainLookup(keys=KEYS)},
        "POST",
        "/prof/lookup/pc-1/keychain",
        "",
    ),
    "get-collection-profile": (
        {"collection_id": "pc-1", "profile_id": "p-1"},
        "GET",
        "/prof/profiles/pc-1/p-1",
        "",
    ),
    "list-segment-members": ({"segment_id": "rts-1"}, "GET", "/prof/segments/rts-1/profiles", ""),
    "list-profile-segments": (
        {"collection_id": "pc-1", "profile_id": "p-1"},
        "GET",
        "/prof/profiles/pc-1/p-1/segments",
        "",
    ),
    "get-collection-stats": ({"collection_id": "pc-1"}, "GET", "/prof/collections/pc-1/stats", ""),
    "get-collection-history": ({"collection_id": "pc-1"}, "GET", "/prof/collections/pc-1/history", ""),
}


@pytest.fixture
async def wire() -> AsyncIterator[tuple[AuthenticatedClient, respx.Router]]:
    """A generated client whose requests land on a respx router answering 429 (declared everywhere)."""
    router = respx.Router(assert_all_mocked=True)
    router.route().respond(429, json={"status": 429, "message": "slow down"})
    client = AuthenticatedClient(base_url=BASE_URL, token="test-token")
    async with httpx.AsyncClient(
        base_url=BASE_URL, transport=httpx.MockTransport(router.async_handler)
    ) as http:
        client.set_async_httpx_client(http)
        yield client, router


def _function(op_id: str) -> Any:
    return importlib.import_module(OPERATIONS[op_id]["module"]).asyncio_detailed


def test_every_operation_has_a_wire_expectation() -> None:
    assert set(REQUIRED_ONLY) == set(operations(normalized_spec()))


@pytest.mark.anyio
@pytest.mark.parametrize("op_id", sorted(REQUIRED_ONLY))
async def test_required_arguments_only(op_id: str, wire: tuple[AuthenticatedClient, respx.Router]) -> None:
    client, router = wire
    arguments, method, path, query = REQUIRED_ONLY[op_id]
    response = await _function(op_id)(client=client, **arguments)
    request = router.calls.last.request
    assert (request.method, request.url.path, request.url.query.decode()) == (method, path, query)
    # The per-client headers are the client layer's job, never a generated argument.
    assert "api-version" not in request.headers
    assert "amperity-tenant" not in request.headers
    assert isinstance(response.parsed, ErrorResponse)
    assert response.parsed.status == 429


@pytest.mark.anyio
async def test_run_workflow_body_has_only_what_was_given(
    wire: tuple[AuthenticatedClient, respx.Router],
) -> None:
    client, router = wire
    await _function("run-workflow")(client=client, body=WorkflowRunRequest(config_id="cfg-1"))
    request = router.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"config_id": "cfg-1"}


@pytest.mark.anyio
async def test_stop_workflow_sends_no_body(wire: tuple[AuthenticatedClient, respx.Router]) -> None:
    client, router = wire
    await _function("stop-workflow")(client=client, workflow_id="wf-1")
    assert router.calls.last.request.content == b""


@pytest.mark.anyio
async def test_list_profiles_sends_one_filter_pair_per_attribute(
    wire: tuple[AuthenticatedClient, respx.Router],
) -> None:
    client, router = wire
    profile_filter = ProfileFilter.from_dict(
        {"first_name": "Daniel", "last_name": "Smith", "city": "Seattle"}
    )
    await _function("list-profiles")(client=client, id="idx-1", filter_=profile_filter, limit=50)
    request = router.calls.last.request
    assert request.url.path == "/api/indexes/idx-1/profiles"
    assert request.url.query.decode() == (
        "limit=50&filter%5Bfirst_name%5D=Daniel&filter%5Blast_name%5D=Smith&filter%5Bcity%5D=Seattle"
    )
    assert request.url.params.multi_items() == [
        ("limit", "50"),
        ("filter[first_name]", "Daniel"),
        ("filter[last_name]", "Smith"),
        ("filter[city]", "Seattle"),
    ]


@pytest.mark.anyio
async def test_a_profile_filter_built_with_keywords_is_sent_as_filter_pairs(
    wire: tuple[AuthenticatedClient, respx.Router],
) -> None:
    client, router = wire
    await _function("list-profiles")(client=client, id="idx-1", filter_=ProfileFilter(first_name="Daniel"))
    assert router.calls.last.request.url.params.multi_items() == [("filter[first_name]", "Daniel")]


@pytest.mark.anyio
async def test_datetime_parameters_are_sent_in_utc_and_naive_ones_refused(
    wire: tuple[AuthenticatedClient, respx.Router],
) -> None:
    client, router = wire
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    await _function("list-events")(
        client=client,
        happened_from=datetime.datetime(2026, 1, 1, 9, 0, 0, 250000, tzinfo=tokyo),
        happened_to=END,
    )
    assert router.calls.last.request.url.params.multi_items() == [
        ("happened_from", "2026-01-01T00:00:00.250Z"),
        ("happened_to", "2025-01-08T00:00:00Z"),
    ]
    calls = len(router.calls)
    with pytest.raises(ConfigurationError, match="happened_to=.* is a naive datetime"):
        await _function("list-events")(client=client, happened_to=datetime.datetime(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="happened_from must be a timezone-aware datetime"):
        await _function("list-events")(client=client, happened_from="2026-01-01")
    assert len(router.calls) == calls


@pytest.mark.anyio
async def test_a_request_body_datetime_is_sent_in_utc(wire: tuple[AuthenticatedClient, respx.Router]) -> None:
    client, router = wire
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    body = WorkflowRunRequest(
        config_id="cfg-1",
        range_from=datetime.datetime(2026, 4, 1, 2, tzinfo=plus_two),
        range_to=datetime.datetime(2026, 4, 2, 2, 0, 0, 123456, tzinfo=plus_two),
    )
    await _function("run-workflow")(client=client, body=body)
    assert json.loads(router.calls.last.request.content) == {
        "config_id": "cfg-1",
        "range_from": "2026-04-01T00:00:00Z",
        "range_to": "2026-04-02T00:00:00.123456Z",
    }


@pytest.mark.anyio
async def test_optional_arguments_are_sent_as_given(wire: tuple[AuthenticatedClient, respx.Router]) -> None:
    client, router = wire
    await _function("list-workflows")(
        client=client, limit=10, next_token="abc", with_total=False, state="failed"
    )
    assert router.calls.last.request.url.params.multi_items() == [
        ("limit", "10"),
        ("next_token", "abc"),
        ("with_total", "false"),
        ("state", "failed"),
    ]


@pytest.mark.anyio
async def test_path_parameters_are_escaped(wire: tuple[AuthenticatedClient, respx.Router]) -> None:
    client, router = wire
    await _function("get-profile")(client=client, id="idx/1", profile_id="p 1?x")
    assert router.calls.last.request.url.raw_path == b"/api/indexes/idx%2F1/profiles/p%201%3Fx"


@pytest.mark.anyio
async def test_realtime_requests_are_what_the_pages_show(
    wire: tuple[AuthenticatedClient, respx.Router],
) -> None:
    """Each page's own spelling: `_enrich` on the GET lookup, `enrich` on the profile and in the body."""
    client, router = wire
    await _function("lookup-profile")(client=client, collection_id="pc-1", keys=KEYS, field_enrich=True)
    assert router.calls.last.request.url.params.multi_items() == [
        ("email", "customer+vip@example.com"),
        ("_enrich", "true"),
    ]
    await _function("get-collection-profile")(
        client=client, collection_id="pc-1", profile_id="p-1", enrich=True
    )
    assert router.calls.last.request.url.query == b"enrich=true"
    await _function("lookup-profile-by-keys")(
        client=client, collection_id="pc-1", body=KeychainLookup(keys=KEYS, enrich=False)
    )
    request = router.calls.last.request
    assert json.loads(request.content) == {"keys": {"email": "customer+vip@example.com"}, "enrich": False}
    event = {"email": "customer@example.com", "event_type": "purchase", "order_total": 42.0}
    await _function("send-event")(client=client, stream_id="es/1", body=StreamEvent.from_dict(event))
    request = router.calls.last.request
    assert request.url.raw_path == b"/prof/events/es%2F1"
    assert json.loads(request.content) == event
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(request.content))
    await _function("list-profile-segments")(
        client=client, collection_id="pc-1", profile_id="p-1", limit=100, next_token="n1"
    )
    assert router.calls.last.request.url.query == b"limit=100&next_token=n1"
