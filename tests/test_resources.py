"""The resource view (``client.workflows.run(...)``) and the typed generic forms of ``client.call``.

Every operation of the index is reached as a resource method and checked on the wire against the
generated function it stands for; the names come from the rules of tools/specs/resources.py; a
regenerated spec brings its methods along with no hand edit.
"""

from __future__ import annotations

import base64
import datetime
import enum
import inspect
import json
import os
import subprocess
import sys
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import pytest

import amperity_async.models
from amperity_async import AmperityClient, ConfigurationError, NotFoundError, ResponseValidationError
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow, run_workflow
from amperity_async.custom.endpoints import Endpoint, ListEndpoint
from amperity_async.custom.operations import REGISTRY, OperationInfo
from amperity_async.custom.resources import OperationMethod, Resource, enum_value
from amperity_async.models import GetWorkflowView, Workflow, WorkflowRunRequest, WorkflowRunRequestRunMode
from amperity_async.resources import ResourceView
from amperity_async.types import Unset
from tools.specs.generate import RESOURCE_NAMES, ModuleNames, generate, operation_index
from tools.specs.resources import (
    Overrides,
    ResourceNamesError,
    client_attributes,
    place_operations,
    plural,
    render_resources_module,
    singular,
    words,
)

PROJECT = Path(__file__).resolve().parents[1]
SPEC = PROJECT / "openapi" / "amperity.json"
BASE = "https://app.amperity.com/api"

# What the rules make of the pinned spec (areas and methods are part of the public API).
REALTIME_PLACES = {
    "send-event": ("realtime", "send_event"),
    "lookup-profile": ("realtime", "lookup"),
    "lookup-profile-by-keys": ("realtime", "lookup_by_keys"),
    "get-collection-profile": ("realtime", "get_collection_profile"),
    "list-segment-members": ("realtime", "list_segment_members"),
    "list-profile-segments": ("realtime", "list_profile_segments"),
    "get-collection-stats": ("realtime", "get_collection_stats"),
    "get-collection-history": ("realtime", "get_collection_history"),
}
EXPECTED_PLACES = {
    "list-events": ("audit_events", "list"),
    "list-campaign": ("campaigns", "list"),
    "list-campaign-draft": ("campaign_drafts", "list"),
    "list-indexes": ("indexes", "list"),
    "get-index": ("indexes", "get"),
    "list-ingest-jobs": ("ingest_jobs", "list"),
    "get-ingest-job": ("ingest_jobs", "get"),
    "list-profiles": ("profiles", "list"),
    "get-profile": ("profiles", "get"),
    "list-segment": ("segments", "list"),
    "list-workflows": ("workflows", "list"),
    "get-workflow": ("workflows", "get"),
    "run-workflow": ("workflows", "run"),
    "stop-workflow": ("workflows", "stop"),
    **REALTIME_PLACES,
}


def jwt(exp: float) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': 'key-1', 'exp': int(exp)})}.c2ln"


class NoLimit:
    async def acquire(self, cost: float = 1.0) -> None:
        return None

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        return None


@attrs.define
class Wire:
    """The innermost transport: keeps every request and answers each with the next canned answer."""

    answers: list[tuple[int, Any]] = attrs.field(factory=list)
    requests: list[httpx.Request] = attrs.field(factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = (
            self.answers.pop(0) if self.answers else (404, {"status": 404, "message": "no such thing"})
        )
        return httpx.Response(status, json=body)

    def client(self, info: OperationInfo | None = None) -> AmperityClient:
        # An operation only the unstable version has is called with that version, as users must.
        unstable = info is not None and info.unstable_only and info.api == "control-plane"
        return AmperityClient(
            **({"api_version": "unstable"} if unstable else {}),
            tenant="acme",
            auth=jwt(time.time() + 3600),
            base_url=BASE,
            transport=httpx.MockTransport(self.handle),
            rate_limit=NoLimit(),
            profile_rate_limit=NoLimit(),
            max_retries=0,
        )


pytestmark = pytest.mark.anyio


def placements() -> dict[str, tuple[str, str]]:
    document = json.loads(SPEC.read_text(encoding="utf-8"))
    index = operation_index(document, ModuleNames(PROJECT / "generator-config.yaml"))
    overrides = Overrides.load(PROJECT / RESOURCE_NAMES)
    return {p.operation_id: (p.area, p.method) for p in place_operations(document, index, overrides)}


def method_of(client: AmperityClient, info: OperationInfo) -> OperationMethod:
    area, name = placements()[info.operation_id]
    method = getattr(getattr(client, area), name)
    assert isinstance(method, OperationMethod)
    return method


# --- names ----------------------------------------------------------------------------------------


def test_words_singulars_and_plurals() -> None:
    assert words("Audit Events") == ["audit", "events"]
    assert words("list-ingest-jobs") == ["list", "ingest", "jobs"]
    assert words("listCampaignDrafts") == ["list", "campaign", "drafts"]
    assert words("getHTTPStatus") == ["get", "http", "status"]
    assert [
        singular(w) for w in ["indexes", "jobs", "policies", "status", "analysis", "batches", "data"]
    ] == [
        "index",
        "job",
        "policy",
        "status",
        "analysis",
        "batch",
        "data",
    ]
    assert [plural(w) for w in ["workflow", "index", "policy", "day", "status", "events"]] == [
        "workflows",
        "indexes",
        "policies",
        "days",
        "statuses",
        "events",
    ]


def test_the_pinned_spec_gets_the_documented_areas_and_methods() -> None:
    assert placements() == EXPECTED_PLACES


def _document(*operations: tuple[str, str, str, str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A minimal spec and index: (method, path, operationId, tag) per operation."""
    paths: dict[str, Any] = {}
    index: dict[str, dict[str, Any]] = {}
    for method, path, op_id, tag in operations:
        paths.setdefault(path, {})[method] = {"operationId": op_id, "tags": [tag]}
        module = op_id.replace("-", "_")
        index[op_id] = {"module": f"amperity_async.api.x.{module}", "method": method.upper(), "path": path}
        index[op_id]["paginated"] = False
    return {"paths": paths}, index


def test_derived_names_sub_areas_unsaid_words_clashes_and_keywords() -> None:
    document, index = _document(
        ("get", "/journeys", "list-journey", "Journey"),
        ("get", "/journeys/{id}/steps", "list-journey-steps", "Journey"),
        ("post", "/journeys/{id}/steps", "add-journey-step", "Journey"),
        ("get", "/a", "list-things", "Stuff"),
        ("get", "/b", "list-thing", "Stuff"),
        ("post", "/c", "import", "Stuff"),
        ("post", "/events/{id}", "send-event", "realtime"),
    )
    placed = {p.operation_id: (p.area, p.method) for p in place_operations(document, index, Overrides())}
    assert placed == {
        "list-journey": ("journeys", "list"),
        "list-journey-steps": ("journey_steps", "list"),
        "add-journey-step": ("journey_steps", "add"),
        # Two operations that would both be stuff.list_thing keep their own module names.
        "list-things": ("stuffs", "list_things"),
        "list-thing": ("stuffs", "list_thing"),
        "import": ("stuffs", "import_"),
        "send-event": ("realtimes", "send_event"),
    }


def test_overrides_rename_areas_and_methods_and_ignore_what_the_spec_lacks() -> None:
    document, index = _document(
        ("post", "/events/{id}", "send-event", "realtime"),
        ("get", "/lookup", "lookup-profile", "realtime"),
    )
    overrides = Overrides.from_data(
        {
            "areas": {"realtime": "realtime", "Absent Tag": "nothing"},
            "operations": {
                "lookup-profile": "lookup",
                "send-event": {"area": "streams", "method": "send"},
                "absent-operation": "ignored",
            },
        }
    )
    placed = {p.operation_id: (p.area, p.method) for p in place_operations(document, index, overrides)}
    assert placed == {"send-event": ("streams", "send"), "lookup-profile": ("realtime", "lookup")}


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ([], "expected a mapping"),
        ({"area": {}}, "expected a mapping with 'areas' and 'operations'"),
        ({"areas": {"Workflow": "Work Flows"}}, "areas.Workflow must be a lower-case Python identifier"),
        ({"areas": {"Workflow": "class"}}, "areas.Workflow must be"),
        ({"operations": {"get-x": {"verb": "get"}}}, "operations.get-x must be a method name or a mapping"),
        ({"operations": {"get-x": {"method": 3}}}, "operations.get-x.method must be"),
        ({"operations": ["get-x"]}, "'areas' and 'operations' must be mappings"),
    ],
)
def test_malformed_overrides_are_refused_naming_the_entry(data: Any, complaint: str) -> None:
    with pytest.raises(ResourceNamesError, match=complaint):
        Overrides.from_data(data)


def test_overrides_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "names.yaml"
    bad.write_text("areas: [unclosed\n", encoding="utf-8")
    with pytest.raises(ResourceNamesError, match="names.yaml is not valid YAML"):
        Overrides.load(bad)
    assert Overrides.load(tmp_path / "absent.yaml") == Overrides()


def test_rendering_refuses_nothing_valid_and_is_deterministic() -> None:
    document = json.loads(SPEC.read_text(encoding="utf-8"))
    index = operation_index(document, ModuleNames(PROJECT / "generator-config.yaml"))
    overrides = Overrides.load(PROJECT / RESOURCE_NAMES)
    first = render_resources_module(document, index, overrides, lambda module: True)
    assert first == render_resources_module(document, index, overrides, lambda module: True)
    compile(first, "resources.py", "exec")
    # Without a ListMethod in the module the list is bound as a plain Method.
    plain = render_resources_module(document, index, overrides, lambda module: False)
    assert "ListMethod" not in plain


def test_an_area_the_client_would_hide_stops_the_generation_with_the_remedy() -> None:
    document, index = _document(("get", "/stats", "list-stats", "Stats"), ("get", "/x", "list-x", "Pages"))
    taken = client_attributes(PROJECT / "custom" / "client.py")
    assert {"call", "pages", "paginate", "stats", "tenant", "http"} <= taken
    with pytest.raises(
        ResourceNamesError, match="pages, stats would be hidden .* openapi/resource-names.yaml"
    ):
        render_resources_module(document, index, Overrides(), lambda module: False, taken)
    renamed = Overrides.from_data({"areas": {"Stats": "statistics", "Pages": "web_pages"}})
    assert "def statistics(self)" in render_resources_module(document, index, renamed, lambda m: False, taken)


# --- the view on a client -------------------------------------------------------------------------


def test_every_area_is_an_attribute_that_the_client_does_not_use_otherwise() -> None:
    areas = {name for name, value in vars(ResourceView).items() if not name.startswith("_")}
    assert areas == {area for area, _ in EXPECTED_PLACES.values()}
    client = Wire().client()
    own = {name for name in vars(AmperityClient) if not name.startswith("_")} | set(vars(client))
    assert not areas & own
    assert all(isinstance(getattr(client, area), Resource) for area in areas)
    assert client.workflows is client.workflows  # one view per client


@pytest.mark.parametrize("info", list(REGISTRY), ids=lambda info: info.name)
def test_every_operation_is_a_resource_method_bound_to_its_module(info: OperationInfo) -> None:
    client = Wire().client()
    method = method_of(client, info)
    endpoint = type(method).endpoint
    assert endpoint is info.load_module().ENDPOINT
    assert endpoint.module == info.module
    # Lists whose cursor can be followed offer pages and items; every other operation only the call.
    assert hasattr(method, "pages") == hasattr(method, "items") == info.paginated
    assert repr(method) == f"<{info.name}: {info.method} {endpoint.path}>"


def test_the_descriptors_agree_with_the_index() -> None:
    for info in REGISTRY:
        endpoint: Endpoint[..., Any] = info.load_module().ENDPOINT
        assert (endpoint.method, endpoint.name) == (info.method, info.name)
        assert [p.name for p in endpoint.parameters if p.location == "path"] == list(info.path_params)
        assert [p.name for p in endpoint.parameters if p.location == "query"] == list(info.query)
        assert {p.name for p in endpoint.parameters if p.required} >= set(info.required_query)
        if info.returns_list:
            assert isinstance(endpoint, ListEndpoint)
            assert endpoint.item.__self__.__name__ == info.item_schema  # type: ignore[attr-defined]
        # An answer without a body (send-event's 202/204) is an EmptyAnswer of the client layer.
        assert endpoint.parse.__name__ == "_parse_body"
        assert endpoint.has_body == (info.response_schema is not None)


# --- the wire, for every operation ----------------------------------------------------------------


def _hints(model: type) -> dict[str, Any]:
    module = sys.modules[model.__module__]
    return typing.get_type_hints(model, {**vars(amperity_async.models), **vars(module)})


def sample(kind: Any, name: str) -> Any:
    """A value of ``kind`` for argument ``name``; enum members stay members (the raw form)."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a not in (type(None), Unset))
    if typing.get_origin(kind) is list:
        return [sample(typing.get_args(kind)[0], name)]
    if kind is str:
        return f"{name}-1"
    if kind is bool:
        return True
    if kind is int:
        return 7
    if kind is float:
        return 2.5
    if kind is datetime.datetime:
        return datetime.datetime(2026, 4, 1, 12, 30, tzinfo=datetime.UTC)
    if kind is datetime.date:
        return datetime.date(2026, 4, 1)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return list(kind)[-1]
    if attrs.has(kind):
        fields = [f for f in attrs.fields(kind) if f.init]
        if not fields:  # an open map such as ProfileFilter
            return kind.from_dict({f"{name}_key": "value"})
        hints = _hints(kind)
        return kind(**{f.name: sample(hints[f.name], f.name) for f in fields})
    raise AssertionError(f"no sample value for {kind!r} (argument {name}): teach sample() this type")


def as_surface(value: Any) -> Any:
    """The form a user of the resource view may write: enum members by their value."""
    return value.value if isinstance(value, enum.Enum) else value


@attrs.frozen
class Arguments:
    """One operation's arguments: for the generated function, and as the resource view takes them."""

    path: list[Any]
    raw: dict[str, Any]
    surface: dict[str, Any]
    body: Any

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint[..., Any], method: OperationMethod) -> Arguments:
        path = [sample(p.type, p.python_name) for p in endpoint.parameters if p.location == "path"]
        raw: dict[str, Any] = {}
        surface: dict[str, Any] = {}
        takes = inspect.signature(type(method).__call__).parameters
        for p in endpoint.parameters:
            if p.location != "path":
                raw[p.python_name] = sample(p.type, p.python_name)
                natural = p.name if p.python_name == p.name + "_" else p.python_name
                assert natural in takes, (natural, list(takes))
                surface[natural] = as_surface(raw[p.python_name])
        body = None
        if endpoint.body is not None:
            body = sample(endpoint.body, "body")
            raw["body"] = body
            fields = [f for f in attrs.fields(endpoint.body) if f.init]
            # The view takes a model body as its fields (each by its wire name where it has one).
            for f in fields:
                natural = f.name[:-1] if f.name.endswith("_") and f.name[:-1] in takes else f.name
                surface[natural] = as_surface(getattr(body, f.name))
            if not fields:
                surface["body"] = body
        return cls(path, raw, surface, body)


def same_request(a: httpx.Request, b: httpx.Request) -> None:
    assert (a.method, str(a.url), a.content) == (b.method, str(b.url), b.content)
    for header in ("amperity-tenant", "api-version", "authorization", "content-type"):
        assert a.headers.get(header) == b.headers.get(header), header


def check_wire(
    request: httpx.Request, info: OperationInfo, endpoint: Endpoint[..., Any], args: Arguments
) -> None:
    """Method, path, query and body as the spec says, whatever the base URL's own path."""
    assert request.method == info.method
    path = info.path
    for name, value in zip(info.path_params, args.path, strict=True):
        path = path.replace("{" + name + "}", quote(str(as_surface(value)), safe=""))
    assert request.url.path.endswith(path), (request.url.path, path)
    sent = set(request.url.params)
    spread = set(info.form_query)  # objects whose entries are parameters of their own
    for p in endpoint.parameters:
        if p.location == "query" and p.name not in spread:
            assert p.name in sent or any(key.startswith(p.name + "[") for key in sent), (p.name, sent)
    if args.body is not None:
        assert json.loads(request.content) == args.body.to_dict()
    assert request.headers["amperity-tenant"] == "acme"


@pytest.mark.parametrize("info", list(REGISTRY), ids=lambda info: info.name)
async def test_each_resource_method_sends_what_its_generated_function_sends(info: OperationInfo) -> None:
    wire = Wire()
    module = info.load_module()
    async with wire.client(info) as client:
        method = method_of(client, info)
        args = Arguments.for_endpoint(module.ENDPOINT, method)
        with pytest.raises(NotFoundError):
            await method(*[as_surface(v) for v in args.path], **args.surface)
        raw = await module.asyncio_detailed(*args.path, client=client.generated, **args.raw)
    assert raw.status_code == 404
    view, generated = wire.requests
    check_wire(view, info, module.ENDPOINT, args)
    same_request(view, generated)


@pytest.mark.parametrize("info", [info for info in REGISTRY if info.paginated], ids=lambda info: info.name)
async def test_pages_and_items_follow_the_cursor_with_the_same_arguments(info: OperationInfo) -> None:
    wire = Wire(answers=[(200, {"data": [], "next_token": "page-2"}), (200, {"data": []})] * 2)
    module = info.load_module()
    async with wire.client(info) as client:
        method = method_of(client, info)
        args = Arguments.for_endpoint(module.ENDPOINT, method)
        path = [as_surface(v) for v in args.path]
        surface = {k: v for k, v in args.surface.items() if k != "next_token"}
        pages = [page async for page in method.pages(*path, **surface)]  # type: ignore[attr-defined]
        items = [item async for item in method.items(*path, max_items=10, **surface)]  # type: ignore[attr-defined]
        await module.asyncio_detailed(
            *args.path, client=client.generated, **{**args.raw, "next_token": "page-2"}
        )
    assert len(pages) == 2 and items == []
    first, second, again, second_again, generated = wire.requests
    assert "next_token" not in first.url.params
    assert second.url.params["next_token"] == "page-2"
    same_request(second, generated)
    same_request(second_again, generated)
    same_request(first, again)


# --- arguments, bodies, errors --------------------------------------------------------------------

RUN = {
    "id": "wf-9",
    "state": "running",
    "type": "courier.group/run",
    "name": "Daily",
    "tenant": "acme",
    "created_at": "2026-06-19T04:00:18.764Z",
}


async def test_run_takes_the_body_as_fields_or_as_a_model_and_sends_the_same_json() -> None:
    wire = Wire(answers=[(201, RUN), (201, RUN), (201, RUN)])
    since = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
    async with wire.client() as client:
        by_fields = await client.workflows.run(config_id="cg-1", run_mode="refresh", range_from=since)
        by_model = await client.workflows.run(
            body=WorkflowRunRequest(
                config_id="cg-1", run_mode=WorkflowRunRequestRunMode.REFRESH, range_from=since
            )
        )
        generic = await client.call(
            run_workflow,
            body=WorkflowRunRequest(
                config_id="cg-1", run_mode=WorkflowRunRequestRunMode.REFRESH, range_from=since
            ),
        )
    assert isinstance(by_fields, Workflow) and by_fields.id == "wf-9" and by_model == generic == by_fields
    bodies = [json.loads(r.content) for r in wire.requests]
    expected = WorkflowRunRequest(
        config_id="cg-1", run_mode=WorkflowRunRequestRunMode.REFRESH, range_from=since
    )
    assert bodies == [expected.to_dict()] * 3
    assert bodies[0]["run_mode"] == "refresh" and bodies[0]["range_from"].startswith("2026-10-01T00:00:00")


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        ({"run_mode": "full"}, "run_workflow: the request body needs config_id"),
        (
            {"config_id": "cg-1", "run_mode": "fast"},
            "run_mode='fast' is not one of 'full', 'refresh', 'source'",
        ),
        (
            {"body": WorkflowRunRequest(config_id="cg-1"), "config_id": "cg-2"},
            "not both .got body= and config_id",
        ),
        ({"config_id": "cg-1", "range_from": datetime.datetime(2026, 10, 1)}, "naive datetime|range_from"),
    ],
)
async def test_a_bad_body_is_refused_before_anything_is_sent(call: dict[str, Any], complaint: str) -> None:
    wire = Wire()
    async with wire.client() as client:
        with pytest.raises(ConfigurationError, match=complaint):
            await client.workflows.run(**call)
    assert wire.requests == []


async def test_enum_arguments_take_members_or_values_and_refuse_others_unsent() -> None:
    wire = Wire(answers=[(200, RUN)] * 3)
    async with wire.client() as client:
        await client.workflows.get("wf 9/x", view="verbose")
        await client.workflows.get("wf 9/x", view=GetWorkflowView.VERBOSE)
        await client.call(get_workflow, "wf 9/x", view="verbose")
        for wrong in ("verbos", "VERBOSE", 1, None):
            with pytest.raises(ConfigurationError, match=r"view=.* is not one of 'overview', 'verbose'"):
                await client.workflows.get("wf-9", view=wrong)  # type: ignore[arg-type]
    assert [r.url.raw_path for r in wire.requests] == [b"/api/workflow/runs/wf%209%2Fx?view=verbose"] * 3
    assert enum_value(GetWorkflowView, GetWorkflowView.OVERVIEW, "view") is GetWorkflowView.OVERVIEW


async def test_errors_are_the_typed_errors_of_the_layer() -> None:
    wire = Wire(answers=[(404, {"status": 404, "message": "no workflow wf-0"})])
    async with wire.client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.workflows.stop("wf-0")
    assert caught.value.status_code == 404 and "no workflow wf-0" in str(caught.value)
    assert wire.requests[0].url.path == "/api/workflow/runs/wf-0/stop"


async def test_answers_that_do_not_match_the_spec_raise_the_validation_error() -> None:
    wire = Wire(answers=[(200, {"data": "not a list"}), (201, {"id": 5}), (200, {"data": [{"name": 1}]})])
    async with wire.client() as client:
        with pytest.raises(ResponseValidationError, match="data"):
            await client.segments.list()
        with pytest.raises(ResponseValidationError, match="run-workflow"):
            await client.workflows.run(config_id="cg-1")
        with pytest.raises(ResponseValidationError):
            [s async for s in client.segments.list.items()]
    assert len(wire.requests) == 3  # a POST is never repeated for a bad answer


async def test_pages_of_a_list_without_a_cursor_and_next_token_are_refused() -> None:
    async with Wire().client() as client:
        assert not hasattr(client.ingest_jobs.list, "pages")
        with pytest.raises(ConfigurationError, match="one page and no cursor"):
            client.pages("list_ingest_jobs")
        with pytest.raises(ConfigurationError, match="not a list operation"):
            client.paginate(get_workflow, "wf-1")
        with pytest.raises(TypeError, match="next_token"):
            client.segments.list.pages(next_token="x")  # type: ignore[call-arg]
        with pytest.raises(ConfigurationError, match="pass start_token=... to resume from a cursor"):
            client.pages(list_segment, next_token="x")


async def test_every_generic_form_sends_the_same_request() -> None:
    wire = Wire(answers=[(200, {"data": []})] * 6)
    async with wire.client() as client:
        results = [
            await client.segments.list(limit=3),
            await client.call(list_segment, limit=3),
            await client.call(list_segment.call, limit=3),
            await client.call(list_segment.ENDPOINT, limit=3),
            await client.call("list_segment", limit=3),
            await client.call(list_segment.asyncio_detailed, limit=3),
        ]
    assert len({repr(r) for r in results}) == 1
    first = wire.requests[0]
    assert str(first.url) == f"{BASE}/segments?limit=3"
    for other in wire.requests[1:]:
        same_request(first, other)


async def test_argument_mistakes_name_the_operation_and_what_it_takes() -> None:
    async with Wire().client() as client:
        with pytest.raises(TypeError, match=r"get_workflow: .*'viwe'.*; it takes workflow_id, view"):
            await client.call("get_workflow", "wf-1", viwe="verbose")
        with pytest.raises(
            TypeError, match=r"list_segment: .*'limti'.*it takes limit, next_token, with_total"
        ):
            await client.call(list_segment.ENDPOINT, limti=3)
        with pytest.raises(TypeError, match=r"list_segment: .*'limti'"):
            client.pages(list_segment, limti=3)
        with pytest.raises(ConfigurationError, match="unknown operation 'list_segmnt'"):
            await client.call("list_segmnt")


# --- a new spec version ---------------------------------------------------------------------------

_VARIANT_PROGRAM = """
import asyncio, json, time, base64
import httpx
from amperity_async import AmperityClient
from amperity_async.custom.resources import OperationMethod

seen = []

def answer(request):
    seen.append(request)
    if request.method == "DELETE":
        return httpx.Response(204)
    token = request.url.params.get("next_token")
    if token is None:
        return httpx.Response(200, json={"data": [{"id": "jr-1", "name": "One"}], "next_token": "t2"})
    return httpx.Response(200, json={"data": [{"id": "jr-2", "name": "Two"}]})

async def main():
    client = AmperityClient(tenant="acme", auth=TOKEN, base_url="https://app.amperity.com/api",
                            transport=httpx.MockTransport(answer), max_retries=0)
    async with client:
        deleted = await client.segments.delete("seg 1")
        names = [j.name async for j in client.journeys.list.items(limit=1, state="live")]
        page = await client.journeys.list(limit=1)
    print(json.dumps({
        "deleted": deleted.status_code,
        "names": names,
        "page_type": type(page).__name__,
        "methods": sorted(n for n, v in vars(client.journeys).items() if isinstance(v, OperationMethod)),
        "requests": [[r.method, str(r.url)] for r in seen],
    }))

asyncio.run(main())
"""


def _variant_spec() -> dict[str, Any]:
    """The pinned spec plus two operations a later version might bring: one under an existing tag
    and a list under a new tag, with its own schemas."""
    document = json.loads(SPEC.read_text(encoding="utf-8"))
    # Paths of the normalized spec carry their API's base path.
    errors = document["paths"]["/api/segments"]["get"]["responses"]
    error_responses = {code: answer for code, answer in errors.items() if code != "200"}
    marks = {k: v for k, v in document["paths"]["/api/segments"]["get"].items() if k.startswith("x-amperity")}
    document["paths"]["/api/segments/{segment-id}"] = {
        "delete": {
            "operationId": "delete-segment",
            "tags": ["Segments"],
            "summary": "DELETE /segments/{segment-id}",
            "description": "Delete a segment.",
            "parameters": [
                {"name": "segment-id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"204": {"description": "Deleted."}, **error_responses},
            **marks,
        }
    }
    document["paths"]["/api/journeys"] = {
        "get": {
            "operationId": "list-journeys",
            "tags": ["Journey"],
            "summary": "GET /journeys",
            "description": "List journeys.",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "next_token", "in": "query", "schema": {"type": "string"}},
                {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["live", "draft"]}},
            ],
            "responses": {
                "200": {
                    "description": "A page of journeys.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JourneyList"}}},
                },
                **error_responses,
            },
            **marks,
        }
    }
    document["components"]["schemas"]["Journey"] = {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    document["components"]["schemas"]["JourneyList"] = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Journey"}},
            "next_token": {"type": "string"},
        },
    }
    document["tags"].append({"name": "Journey", "description": "Journeys."})
    return document


@pytest.fixture(scope="module")
def variant_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("variant")
    spec = root / "variant.json"
    spec.write_text(json.dumps(_variant_spec(), indent=2), encoding="utf-8")
    generate(PROJECT, out=root / "amperity_async", spec=spec)
    # The generated package links the hand-written layer as ../custom, as in the repository.
    (root / "custom").symlink_to(PROJECT / "custom", target_is_directory=True)
    yield root


@pytest.mark.timeout(600)
def test_a_regenerated_spec_brings_its_new_operations_as_methods(variant_package: Path) -> None:
    view = (variant_package / "amperity_async" / "resources.py").read_text(encoding="utf-8")
    assert "self.delete = delete_segment.Method(client)" in view
    assert "self.list = list_journeys.ListMethod(client)" in view
    program = variant_package / "program.py"
    program.write_text(f"TOKEN = {jwt(time.time() + 3600)!r}\n" + _VARIANT_PROGRAM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(variant_package), "AMPERITY_BASE_URL": BASE}
    result = subprocess.run(
        [sys.executable, "-P", str(program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["deleted"] == 204  # an answer without a body: its status
    assert report["names"] == ["One", "Two"] and report["page_type"] == "JourneyList"
    assert report["methods"] == ["list"]
    assert report["requests"] == [
        ["DELETE", f"{BASE}/segments/seg%201"],
        ["GET", f"{BASE}/journeys?limit=1&state=live"],
        ["GET", f"{BASE}/journeys?limit=1&next_token=t2&state=live"],
        ["GET", f"{BASE}/journeys?limit=1"],
    ]


def test_the_real_time_api_gets_one_area_with_short_lookups() -> None:
    """openapi/realtime.json, as it will be merged: tag ``realtime`` is one area, named by the override."""
    document = json.loads((PROJECT / "openapi" / "realtime.json").read_text(encoding="utf-8"))
    index = {
        op["operationId"]: {"module": "amperity_async.api.realtime." + op["operationId"].replace("-", "_")}
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    placed = {
        p.operation_id: (p.area, p.method)
        for p in place_operations(document, index, Overrides.load(PROJECT / RESOURCE_NAMES))
    }
    assert placed == REALTIME_PLACES
