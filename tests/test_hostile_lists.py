"""AmperityClient against list servers that misbehave: every layer runs (tokens, validation, models,
pagination, prefetch), only the innermost transport is an in-memory server written here."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from amperity_async import UNLIMITED, AmperityClient, PaginationGuards, StaticToken
from amperity_async.api.ingest import list_ingest_jobs
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow, list_workflows, run_workflow
from amperity_async.custom.errors import ConfigurationError, PaginationError, ResponseValidationError
from amperity_async.custom.extract import Checkpoint, checkpoint_path, extract_to_file
from amperity_async.models import WorkflowRunRequest

pytestmark = pytest.mark.anyio

_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrZXktMSIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln"  # exp in 2100


def segments(*numbers: int) -> list[dict[str, Any]]:
    return [{"id": f"seg-{n}", "name": f"Segment {n}", "status": "active"} for n in numbers]


class ListServer:
    """Answers every GET with the next body from ``bodies`` (the last one forever), each carrying a
    new cursor unless the body gives its own ``next_token`` (``None`` there: the key is omitted)."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = bodies
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        n = len(self.requests)
        body = dict(self.bodies[min(n, len(self.bodies)) - 1])
        body.setdefault("next_token", f"cursor-{n}")
        return httpx.Response(200, json=body)

    @property
    def cursors_sent(self) -> list[str | None]:
        return [request.url.params.get("next_token") for request in self.requests]

    def client(self, **options: Any) -> AmperityClient:
        # No client-side rate limit: the hostile lists below run to hundreds of pages.
        return AmperityClient(
            tenant="acme",
            auth=StaticToken(_TOKEN),
            transport=httpx.MockTransport(self.handle),
            rate_limit=UNLIMITED,
            profile_rate_limit=UNLIMITED,
            **options,
        )


async def collect_ids(items: Any) -> tuple[list[str], PaginationError | None]:
    seen: list[str] = []
    try:
        async for item in items:
            seen.append(item.id)
    except PaginationError as exc:
        return seen, exc
    return seen, None


# cursor tricks


async def test_empty_pages_under_ever_new_cursors_end_after_the_default_cap() -> None:
    server = ListServer({"data": segments(1, 2)}, {"data": []})
    async with server.client() as client:
        seen, error = await collect_ids(client.paginate(list_segment, limit=2))
    assert seen == ["seg-1", "seg-2"]
    assert error is not None and "list-segment" in str(error)
    assert len(server.requests) == 1 + 100


async def test_the_cap_is_a_client_setting_and_a_per_call_option() -> None:
    server = ListServer({"data": segments(1)}, {"data": []})
    async with server.client(pagination_guards=PaginationGuards(max_empty_pages=10)) as client:
        assert (await collect_ids(client.paginate(list_segment)))[0] == ["seg-1"]
        assert len(server.requests) == 1 + 10
        server.requests.clear()
        per_call = PaginationGuards(max_empty_pages=3)
        seen, error = await collect_ids(client.paginate(list_segment, pagination_guards=per_call))
        assert (seen, len(server.requests)) == (["seg-1"], 1 + 3)
        assert error is not None


async def test_the_same_items_under_ever_new_cursors_are_yielded_once() -> None:
    server = ListServer({"data": segments(*range(10))})
    async with server.client() as client:
        seen, error = await collect_ids(client.paginate(list_segment, limit=10))
    assert seen == [f"seg-{n}" for n in range(10)]
    assert error is not None and "only items delivered already" in str(error)
    assert server.cursors_sent == [None, "cursor-1"]


async def test_extract_writes_each_item_once_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    server = ListServer({"data": segments(*range(10))})
    out = tmp_path / "segments.jsonl"
    async with server.client() as client:
        with pytest.raises(PaginationError):
            await extract_to_file(client, client.operation(list_segment), out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"seg-{n}" for n in range(10)]
    checkpoint = Checkpoint.load(checkpoint_path(out))
    assert checkpoint is not None
    assert (checkpoint.rows, checkpoint.next_token, checkpoint.done) == (10, "cursor-1", False)


# liberal where the documents are silent


WORKFLOW = {
    "id": "wf-1",
    "state": "running",
    "type": "courier.group/run",
    "name": "Daily",
    "tenant": "acme",
    "created_at": "2026-06-19T04:00:18.764Z",
}


async def test_a_null_next_token_ends_the_list_and_null_optional_fields_parse() -> None:
    running = dict(WORKFLOW, ended_at=None, error=None, principal_email=None, task_instances=None)
    server = ListServer(
        {"data": [WORKFLOW]},
        {"data": [dict(running, id="wf-2")], "next_token": None, "total": None},
    )
    async with server.client() as client:
        pages = client.pages(list_workflows)
        runs = [run async for page in pages for run in page.data]
    assert [run.id for run in runs] == ["wf-1", "wf-2"]
    assert runs[1].ended_at is None and runs[1].error is None and runs[1].task_instances is None
    assert pages.next_token is None
    assert server.cursors_sent == [None, "cursor-1"]
    assert runs[1].to_dict()["ended_at"] is None  # written back as it came


async def test_an_empty_next_token_ends_the_list_and_is_never_sent() -> None:
    server = ListServer({"data": segments(1)}, {"data": segments(2), "next_token": ""})
    async with server.client() as client:
        seen, error = await collect_ids(client.paginate(list_segment))
    assert (seen, error) == (["seg-1", "seg-2"], None)
    assert server.cursors_sent == [None, "cursor-1"]


async def test_required_fields_stay_strict_and_the_items_before_a_bad_one_are_delivered() -> None:
    server = ListServer(
        {"data": [*segments(1), {"id": None, "name": "x", "status": "active"}], "next_token": None}
    )
    async with server.client() as client:
        with pytest.raises(ResponseValidationError) as info:
            await collect_ids(client.paginate(list_segment))
    assert info.value.field == "data[1].id"
    server = ListServer({"data": [*segments(1), {"name": "x", "status": "active"}], "next_token": None})
    async with server.client() as client:
        with pytest.raises(ResponseValidationError) as info:
            await collect_ids(client.paginate(list_segment))
    assert info.value.field == "data[1].id"
    server = ListServer({"data": [dict(WORKFLOW, warn_after_ms="soon")], "next_token": None})
    async with server.client() as client:
        with pytest.raises(ResponseValidationError, match="warn_after_ms"):
            await collect_ids(client.paginate(list_workflows))


async def test_an_unparseable_timestamp_names_the_item() -> None:
    server = ListServer(
        {"data": [WORKFLOW, dict(WORKFLOW, id="wf-2", ended_at="yesterday")], "next_token": None}
    )
    seen: list[str] = []
    async with server.client() as client:
        with pytest.raises(ResponseValidationError) as info:
            async for run in client.paginate(list_workflows):
                seen.append(run.id)
    assert seen == ["wf-1"]
    assert info.value.field == "data[1]"


async def test_a_timestamp_without_offset_from_the_server_is_utc() -> None:
    server = ListServer({"data": [dict(WORKFLOW, created_at="2026-06-19T04:00:18")], "next_token": None})
    async with server.client() as client:
        run = [run async for run in client.paginate(list_workflows)][0]
    assert run.created_at == datetime.datetime(2026, 6, 19, 4, 0, 18, tzinfo=datetime.UTC)


# stopping and the wrong kind of operation


async def test_max_pages_stops_and_next_token_resumes() -> None:
    server = ListServer(
        {"data": segments(1)},
        {"data": segments(2)},
        {"data": segments(3)},
        {"data": segments(4), "next_token": None},
    )
    async with server.client() as client:
        pages = client.pages(list_segment, max_pages=2)
        first = [item.id async for page in pages for item in page.data]
        assert (first, pages.next_token) == (["seg-1", "seg-2"], "cursor-2")
        rest = client.paginate(list_segment, start_token=pages.next_token)
        assert await collect_ids(rest) == (["seg-3", "seg-4"], None)
    assert server.cursors_sent == [None, "cursor-1", "cursor-2", "cursor-3"]


async def test_a_list_without_a_cursor_is_called_per_window_not_paginated() -> None:
    server = ListServer({"data": []})
    async with server.client() as client:
        with pytest.raises(ConfigurationError, match=r"client\.call\(list_ingest_jobs.*at most 7 days"):
            client.paginate(list_ingest_jobs)
        with pytest.raises(ConfigurationError, match="not a list operation"):
            client.pages(get_workflow, "wf-1")
    assert server.requests == []


# datetimes on the wire


async def test_an_aware_datetime_is_sent_as_the_same_instant_in_utc() -> None:
    server = ListServer({"data": [], "next_token": None})
    pacific = datetime.timezone(datetime.timedelta(hours=-8))
    async with server.client() as client:
        await client.call(list_workflows, created_from=datetime.datetime(2026, 3, 1, 16, 30, tzinfo=pacific))
    assert server.requests[0].url.params["created_from"] == "2026-03-02T00:30:00Z"


async def test_a_naive_datetime_is_refused_naming_the_parameter_and_nothing_is_sent() -> None:
    server = ListServer({"data": [], "next_token": None})
    naive = datetime.datetime(2026, 3, 1)
    async with server.client() as client:
        with pytest.raises(ConfigurationError, match=r"ended_to='2026-03-01T00:00:00' is a naive datetime"):
            await client.call(list_workflows, ended_to=naive)
        with pytest.raises(ConfigurationError, match="created_from"):
            await list_workflows.asyncio_detailed(client=client.generated, created_from=naive)
        with pytest.raises(ConfigurationError, match="range_from"):
            await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-1", range_from=naive))
        with pytest.raises(ConfigurationError, match="created_from"):
            async for _ in client.paginate(list_workflows, created_from=naive):
                pass
    assert server.requests == []
