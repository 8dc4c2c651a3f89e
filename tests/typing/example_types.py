"""Checked by mypy in CI: a type checker infers item and result types from the generated modules."""

from typing import assert_type

from amperity_async import AmperityClient, ClientCredentials
from amperity_async.api.profiles import get_profile, list_profiles
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import run_workflow
from amperity_async.models import Profile, Segment, Workflow, WorkflowRunRequest


async def example() -> None:
    async with AmperityClient(tenant="acme", auth=ClientCredentials("id", "secret")) as client:
        async for segment in client.paginate(list_segment, limit=100):
            assert_type(segment, Segment)
        async for page in client.pages(list_segment, limit=100):
            assert_type(page.data, list[Segment])
            assert_type(page.next_token, str | None)
        async for profile in client.paginate(list_profiles.asyncio_detailed, "idx-1"):
            assert_type(profile, Profile)
        run = await client.call(run_workflow, body=WorkflowRunRequest(config_id="cg-1"))
        assert_type(run, Workflow)
        one = await client.call(get_profile.asyncio_detailed, "idx-1", "cl-1")
        assert_type(one, Profile)
