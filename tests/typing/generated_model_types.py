"""Checked by mypy: keyword constructors, nullable optional fields and the client's new settings
type-check."""

import datetime
from typing import assert_type

from amperity_async import UNLIMITED, AmperityClient, ClientCredentials, PaginationGuards
from amperity_async.api.workflow import list_workflows
from amperity_async.models import ProfileFilter, Workflow
from amperity_async.types import Unset


async def example() -> None:
    profile_filter = ProfileFilter(first_name="Daniel", last_name="Smith")
    assert_type(profile_filter["first_name"], str)
    guards = PaginationGuards(max_empty_pages=500, max_repeated_pages=None)
    auth = ClientCredentials("id", "secret")
    async with AmperityClient(
        tenant="acme", auth=auth, rate_limit=UNLIMITED, pagination_guards=guards
    ) as client:
        async for run in client.paginate(
            list_workflows, pagination_guards=PaginationGuards(max_empty_pages=10)
        ):
            assert_type(run, Workflow)
            assert_type(run.ended_at, datetime.datetime | None | Unset)
            if isinstance(run.ended_at, datetime.datetime):
                print(run.ended_at - run.created_at)
