"""Deliberate mistakes a user could make; both type checkers must report every marked line.

Not part of ``make typecheck`` (excluded in pyproject.toml): tests/test_typing_outside.py runs
mypy and pyright on it from outside the repository and asserts the diagnostics. Each mistake is
the line after a ``MISTAKE`` comment naming the error code each checker reports.
"""

from amperity_async import AmperityClient
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow
from amperity_async.models import GetWorkflowView


async def mistakes(client: AmperityClient) -> None:
    # MISTAKE: a misspelled keyword [mypy call-arg] [pyright reportCallIssue]
    await list_segment.asyncio(client=client.generated, limt=5)
    # MISTAKE: a string where the enum is expected [mypy arg-type] [pyright reportArgumentType]
    await get_workflow.asyncio("wf-1", client=client.generated, view="verbos")
    # MISTAKE: an enum member that does not exist [mypy attr-defined] [pyright reportAttributeAccessIssue]
    print(GetWorkflowView.VERBOS)
