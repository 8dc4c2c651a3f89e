"""Every operation of the normalized spec, served by the fake tenant, answers as the spec says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_tenant_support import headers, running
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from amperity_async.testing.data import is_terminal
from amperity_async.testing.spec import ACTION, CREATE, GET, LIST, STORE, TenantSpec

pytestmark = pytest.mark.anyio

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi" / "amperity.json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC_FILE.read_text("utf-8")))


def conforms(openapi: OpenAPI, method: str, path: str, response: httpx.Response) -> None:
    """Raise unless the response fits the spec's response for this method and path."""
    request = MockRequest("https://app.amperity.com", method.lower(), path)
    openapi.validate_response(
        request,
        MockResponse(response.content, status_code=response.status_code, content_type="application/json"),
    )


def version_for(spec: TenantSpec, op: Any) -> str:
    return op.stability if op.stability != "stable" else spec.api_versions[op.api][0]


def window_params(op: Any) -> dict[str, str]:
    """Required time windows from the tenant's first day, as long as the operation accepts."""
    params = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = (
        start + timedelta(days=op.max_window_days) if op.max_window_days else datetime(2026, 4, 1, tzinfo=UTC)
    )
    for low, high in op.time_windows:
        if op.query[low].required or op.query[high].required:
            params.update(
                {low: start.isoformat().replace("+00:00", "Z"), high: end.isoformat().replace("+00:00", "Z")}
            )
    return params


def example_body(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    return {name: props[name].get("example", "x") for name in schema.get("required") or ()}


async def test_every_operation_of_the_spec_answers_conforming_responses(openapi: OpenAPI) -> None:
    spec = TenantSpec.load()
    served: set[str] = set()
    async with running(rows=30, indexes=2, profiles_per_index=20) as (tenant, client, token):
        dataset = tenant.dataset
        for op in spec.operations:
            if op.role == STORE:
                continue  # the profile store's operations: tests/test_realtime_fake_tenant.py
            hdrs = headers(tenant, token, version_for(spec, op))
            parent_ids: list[str] = []
            path = op.path
            collection_path = op.collection or op.path
            model = dataset.models.get(collection_path)
            chain = []
            while model is not None and model.parent is not None:
                chain.insert(0, model.parent)
                model = model.parent
            for parent in chain:
                parent_ids.append(dataset.ids(parent.op.path, parent_ids, 1)[0])
            names = list(op.path_params)
            values = list(parent_ids)
            if op.role in (GET, ACTION):
                collection = dataset.collection(collection_path, parent_ids)
                assert collection is not None
                index = 0
                if op.role == ACTION:
                    index = next(
                        i for i in range(collection.count) if not is_terminal(collection.state_of(i))
                    )
                values.append(collection.context(index).item_id)
            for name, value in zip(names, values, strict=True):
                path = path.replace("{" + name + "}", value)
            params = window_params(op)
            if op.role == LIST:
                params["with_total"] = "true"
            body = example_body(op.request_schema) if op.request_schema else None
            # Spec paths carry their API's base path: they are relative to the host.
            url = tenant.root_url + path
            response = await client.request(op.method, url, params=params, headers=hdrs, json=body)
            assert response.status_code == op.success_status, (op.operation_id, response.text)
            conforms(openapi, op.method, path, response)
            if op.role == LIST:
                assert response.json()["data"], f"{op.operation_id} served no items"
                assert response.json()["total"] >= len(response.json()["data"])
            if op.role == CREATE:
                assert response.status_code == 201
            # The documented error answers fit too: 401 for every operation.
            unauthorized = await client.request(
                op.method, url, params=params, json=body, headers={**hdrs, "Authorization": "Bearer nope"}
            )
            assert unauthorized.status_code == 401
            conforms(openapi, op.method, path, unauthorized)
            if op.role == LIST:
                bad = await client.get(url, params={**params, "limit": "0"}, headers=hdrs)
                assert bad.status_code == 400
                conforms(openapi, op.method, path, bad)
            if op.role == GET:
                missing_path = path.rsplit("/", 1)[0] + "/zz-0000000000"
                missing = await client.get(tenant.root_url + missing_path, headers=hdrs)
                assert missing.status_code == 404
                conforms(openapi, op.method, missing_path, missing)
            served.add(op.operation_id)
    assert served == {op.operation_id for op in spec.operations if op.role != STORE}
    assert len(served) >= 14


async def test_rate_limited_answers_conform(openapi: OpenAPI) -> None:
    async with running(rows=5, rate_limits=True, control_plane_rate=1) as (tenant, client, token):
        first = await client.get("/segments", headers=headers(tenant, token))
        second = await client.get("/segments", headers=headers(tenant, token))
    assert (first.status_code, second.status_code) == (200, 429)
    conforms(openapi, "GET", "/api/segments", second)
    assert not {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining"} & {
        h.lower() for h in second.headers
    }


async def test_answers_under_the_documented_view_and_closed_bodies_conform(openapi: OpenAPI) -> None:
    async with running(rows=20, views=True, closed_request_bodies=True) as (tenant, client, token):
        hdrs = headers(tenant, token)
        run = (await client.get("/workflow/runs", headers=hdrs)).json()["data"][0]
        for params in ({}, {"view": "overview"}, {"view": "verbose"}):
            path = f"/workflow/runs/{run['id']}"
            response = await client.get(path, params=params, headers=hdrs)
            assert response.status_code == 200
            conforms(openapi, "GET", "/api" + path, response)
        refused = await client.post("/workflow/runs", json={"config_id": "cg-1", "extra": 1}, headers=hdrs)
        assert refused.status_code == 400
        conforms(openapi, "POST", "/api/workflow/runs", refused)
        wrong = await client.delete("/segments", headers=hdrs)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
