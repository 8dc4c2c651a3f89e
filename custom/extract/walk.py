"""Reading a plan's items in order, batch by batch, each with the cursor to resume after it.

Every request goes through the client (tokens, limits, retries, checks): ``client.pages`` for lists
whose cursor can be followed, ``client.call`` once per window for lists answered in one response.
The cursor of a one-response list is never followed, whatever the server puts in ``next_token``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from ..client import AmperityClient
from ..errors import ResponseValidationError
from .boundaries import BoundaryGuard
from .checkpoint import Cursor
from .plan import Plan


@attrs.frozen
class Batch:
    """Items to write, and where the source is once they are written."""

    items: list[Any]
    cursor: Cursor
    pages: int = 1


Deliver = Callable[[Batch], Awaitable[None]]


class _Budget:
    """What ``max_items`` still allows."""

    def __init__(self, max_items: int | None, taken: int) -> None:
        self.remaining = None if max_items is None else max(0, max_items - taken)

    @property
    def spent(self) -> bool:
        return self.remaining == 0

    def take(self, items: list[Any]) -> list[Any]:
        if self.remaining is None:
            return items
        items = items[: self.remaining]
        self.remaining -= len(items)
        return items


async def walk(client: AmperityClient, plan: Plan, start: Cursor, rows_so_far: int, deliver: Deliver) -> None:
    """Deliver every item from ``start`` on; ``deliver`` returns once the batch is safely written."""
    if start.done:
        return
    budget = _Budget(plan.max_items, rows_so_far)
    if budget.spent:
        await deliver(Batch([], Cursor(step=plan.steps, done=True), pages=0))
        return
    guard = plan.guard(start)
    step, token = start.step, start.next_token
    while step < plan.steps:
        params = plan.params_for(step)

        def after(next_token: str | None, step: int = step) -> Cursor:
            return _cursor(plan, guard, step, next_token, budget.spent)

        if plan.op.paginated:
            async with client.pages(plan.op.load_module(), *plan.args, start_token=token, **params) as pager:
                async for page in pager:
                    items = budget.take(guard.admit(page.raw))
                    await deliver(Batch(items, after(pager.next_token)))
                    if budget.spent:
                        return
        else:
            answer = await client.call(plan.op.load_module(), *plan.args, **params)
            items = budget.take(guard.admit(_items_of(plan, answer)))
            await deliver(Batch(items, after(None)))
            if budget.spent:
                return
        step, token = step + 1, None
        if step < plan.steps:
            guard.enter(plan.windows[step].end)


def _cursor(plan: Plan, guard: BoundaryGuard, step: int, next_token: str | None, spent: bool) -> Cursor:
    """The cursor after a batch of window ``step`` whose next page is ``next_token`` (None: window done)."""
    if next_token is not None and not spent:
        return Cursor(step, next_token, False, tuple(sorted(guard.previous)), tuple(sorted(guard.current)))
    following = step + 1
    if spent or following >= plan.steps:
        return Cursor(plan.steps, None, True)
    # The next window starts: this window's boundary keys guard it.
    return Cursor(following, None, False, tuple(sorted(guard.current)), ())


def _items_of(plan: Plan, answer: Any) -> list[Any]:
    """The items of a one-response list as JSON objects, as the paginated lists write them."""
    data: Sequence[Any] | None = getattr(answer, "data", None)
    if not isinstance(data, list):
        raise ResponseValidationError(
            operation=plan.op.operation_id, field="data", detail="a list response must carry a `data` array"
        )
    return [item.to_dict() if hasattr(item, "to_dict") else item for item in data]
