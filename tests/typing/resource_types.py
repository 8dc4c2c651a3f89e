"""Checked by mypy and pyright: the resource view's methods return the operations' models."""

import datetime
from typing import Any, assert_type

from amperity_async import AmperityClient, ClientCredentials, ItemIterator, PageIterator, PaginationGuards
from amperity_async.api.indexes import list_indexes
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow, run_workflow
from amperity_async.models import (
    AuditEvent,
    AuditEventList,
    Campaign,
    CampaignDraftList,
    CampaignList,
    GetWorkflowView,
    Index,
    IndexListResponse,
    IngestJobDetails,
    IngestJobDetailsList,
    Profile,
    ProfileFilter,
    ProfileListResponse,
    Segment,
    SegmentList,
    Workflow,
    WorkflowList,
    WorkflowRunRequest,
    WorkflowRunRequestRunMode,
)

SINCE = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)
UNTIL = datetime.datetime(2026, 4, 7, tzinfo=datetime.UTC)


async def every_method(client: AmperityClient) -> None:
    assert_type(await client.audit_events.list(limit=10, happened_from=SINCE), AuditEventList)
    assert_type(await client.campaigns.list(with_total=True), CampaignList)
    assert_type(await client.campaign_drafts.list(), CampaignDraftList)
    assert_type(await client.indexes.list(), IndexListResponse)
    assert_type(await client.indexes.get("idx-1"), Index)
    assert_type(await client.ingest_jobs.list(created_from=SINCE, created_to=UNTIL), IngestJobDetailsList)
    assert_type(await client.ingest_jobs.get("job-1"), IngestJobDetails)
    by_email = ProfileFilter(email="a@example.com")
    assert_type(await client.profiles.list("idx-1", filter=by_email), ProfileListResponse)
    assert_type(await client.profiles.get("idx-1", "cl-1"), Profile)
    assert_type(await client.segments.list(limit=5), SegmentList)
    assert_type(await client.workflows.list(state="failed", type="courier.group/run"), WorkflowList)
    assert_type(await client.workflows.get("wf-1", view="verbose"), Workflow)
    assert_type(await client.workflows.get("wf-1", view=GetWorkflowView.OVERVIEW), Workflow)
    assert_type(await client.workflows.run(config_id="cg-1", run_mode="refresh"), Workflow)
    full = WorkflowRunRequestRunMode.FULL
    assert_type(await client.workflows.run(config_id="cg-1", run_mode=full, range_from=SINCE), Workflow)
    assert_type(await client.workflows.run(body=WorkflowRunRequest(config_id="cg-1")), Workflow)
    assert_type(await client.workflows.stop("wf-1"), Workflow)


async def paging(client: AmperityClient) -> None:
    guards = PaginationGuards(max_empty_pages=10)
    pages = client.segments.list.pages(limit=100, max_pages=2, pagination_guards=guards)
    assert_type(pages, PageIterator[Segment])
    async for page in pages:
        assert_type(page.data, list[Segment])
    items = client.audit_events.list.items(limit=100, max_items=250, start_token=pages.next_token)
    assert_type(items, ItemIterator[AuditEvent])
    assert_type(client.campaigns.list.items(), ItemIterator[Campaign])
    assert_type(client.profiles.list.pages("idx-1", prefetch=False), PageIterator[Profile])


async def generic_forms(client: AmperityClient) -> None:
    assert_type(await client.call(get_workflow, "wf-1", view="verbose"), Workflow)
    assert_type(await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-1")), Workflow)
    assert_type(await client.call(list_segment.call, limit=3), SegmentList)
    assert_type(await client.call(get_workflow.ENDPOINT, "wf-1"), Workflow)
    assert_type(await client.call("list_indexes"), Any)
    assert_type(client.pages(list_indexes, limit=10, max_pages=1), PageIterator[Index])
    assert_type(client.paginate(list_segment, limit=10, max_items=5), ItemIterator[Segment])


async def main() -> None:
    async with AmperityClient(tenant="acme", auth=ClientCredentials("id", "secret")) as client:
        await every_method(client)
        await paging(client)
        await generic_forms(client)
