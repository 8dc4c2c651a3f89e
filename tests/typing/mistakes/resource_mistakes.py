"""Mistakes on the resource view and on ``client.call``/``pages``/``paginate``: both checkers report each.

Like wrong_calls.py, each mistake is the line after a ``MISTAKE`` comment naming the error code
each checker reports (tests/test_typing_outside.py asserts them).
"""

from amperity_async import AmperityClient
from amperity_async.api.ingest import list_ingest_jobs
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow


async def resource_methods(client: AmperityClient) -> None:
    # MISTAKE: a misspelled keyword [mypy call-arg] [pyright reportCallIssue]
    await client.segments.list(limti=5)
    # MISTAKE: a wrong enum string [mypy arg-type] [pyright reportArgumentType]
    await client.workflows.get("wf-1", view="verbos")
    # MISTAKE: a missing path parameter [mypy call-arg] [pyright reportCallIssue]
    await client.workflows.get()
    # MISTAKE: body fields without the required one [mypy call-overload] [pyright reportCallIssue]
    await client.workflows.run(run_mode="full")
    # MISTAKE: a wrong enum string in a body field [mypy call-overload] [pyright reportArgumentType]
    await client.workflows.run(config_id="cg-1", run_mode="fast")
    # MISTAKE: the cursor is the iterator's business [mypy call-arg] [pyright reportCallIssue]
    client.segments.list.pages(next_token="x")
    # MISTAKE: no usable cursor, no pages [mypy attr-defined] [pyright reportAttributeAccessIssue]
    client.ingest_jobs.list.pages()


async def generic_calls(client: AmperityClient) -> None:
    # MISTAKE: a misspelled keyword [mypy call-overload] [pyright reportCallIssue]
    await client.call(list_segment, limti=5)
    # MISTAKE: a wrong enum string [mypy arg-type] [pyright reportArgumentType]
    await client.call(get_workflow, "wf-1", view="verbos")
    # MISTAKE: a missing path parameter [mypy call-overload] [pyright reportCallIssue]
    await client.call(get_workflow)
    # MISTAKE: pages of a list without a usable cursor [mypy call-overload] [pyright reportCallIssue]
    client.pages(list_ingest_jobs)
    # MISTAKE: a misspelled option [mypy call-overload] [pyright reportCallIssue]
    client.paginate(list_segment, max_itmes=3)
