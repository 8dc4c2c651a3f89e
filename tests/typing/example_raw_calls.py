"""A user's program: raw generated calls through the client, enums, errors and the version."""

from typing import assert_type

import anyio

import amperity_async
from amperity_async import AmperityClient, AmperityError, ClientCredentials, NotFoundError
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow
from amperity_async.models import ErrorResponse, GetWorkflowView, SegmentList, Workflow


async def main() -> None:
    assert_type(amperity_async.__version__, str)
    async with AmperityClient(tenant="acme", auth=ClientCredentials("id", "secret")) as client:
        page = await list_segment.asyncio(client=client.generated, limit=5)
        assert_type(page, ErrorResponse | SegmentList | None)
        try:
            run = await client.call(get_workflow, "wf-1", view=GetWorkflowView.VERBOSE)
            assert_type(run, Workflow)
        except NotFoundError as exc:
            assert_type(exc.status_code, int)
        except AmperityError as exc:
            print("failed:", exc)


if __name__ == "__main__":
    anyio.run(main)
