"""Cursor pagination, tested on the iterators themselves with an in-memory page source."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

from amperity_async.custom.errors import PaginationError, ResponseValidationError
from amperity_async.custom.pagination import ItemIterator, Page, PageIterator

pytestmark = pytest.mark.anyio


class Source:
    """Pages keyed by the cursor that fetches them (None: the first page)."""

    def __init__(self, pages: dict[str | None, tuple[list[Any], str | None]], *, total: int | None = None) -> None:
        self.pages = pages
        self.total = total
        self.requested: list[str | None] = []
        self.gate: anyio.Event | None = None
        self.in_flight = 0

    async def fetch(self, token: str | None) -> Page[dict[str, Any]]:
        self.requested.append(token)
        self.in_flight += 1
        try:
            if self.gate is not None and token is not None:
                await self.gate.wait()
            raw, next_token = self.pages[token]
            return Page(
                operation="list-things",
                raw=raw,
                next_token=next_token,
                total=self.total,
                token=token,
                request_id=f"req-{token}",
                convert=lambda item: dict(item),
            )
        finally:
            self.in_flight -= 1


def chain(n_pages: int, per_page: int = 2, last_token: str | None = None) -> dict[str | None, tuple[list[Any], str | None]]:
    pages: dict[str | None, tuple[list[Any], str | None]] = {}
    for i in range(n_pages):
        key = None if i == 0 else f"c{i}"
        nxt = f"c{i + 1}" if i + 1 < n_pages else last_token
        pages[key] = ([{"id": i * per_page + j} for j in range(per_page)], nxt)
    return pages


async def test_follows_cursors_and_stops_when_next_token_is_absent() -> None:
    source = Source(chain(3))
    items = [item["id"] async for item in ItemIterator(PageIterator("list-things", source.fetch))]
    assert items == [0, 1, 2, 3, 4, 5]
    assert source.requested == [None, "c1", "c2"]


async def test_empty_next_token_ends_the_list_and_is_never_sent() -> None:
    source = Source(chain(2, last_token=""))
    pages = [page async for page in PageIterator("list-things", source.fetch)]
    assert len(pages) == 2
    assert source.requested == [None, "c1"]
    assert "" not in source.requested


async def test_an_empty_page_with_a_cursor_is_not_the_end() -> None:
    source = Source({None: ([], "c1"), "c1": ([{"id": 7}], None)})
    items = [item async for item in ItemIterator(PageIterator("list-things", source.fetch))]
    assert items == [{"id": 7}]


async def test_a_repeating_cursor_raises_instead_of_looping() -> None:
    source = Source({None: ([{"id": 1}], "c1"), "c1": ([{"id": 2}], "c2"), "c2": ([{"id": 3}], "c1")})
    seen = []
    with pytest.raises(PaginationError, match="c1"):
        async for item in ItemIterator(PageIterator("list-things", source.fetch)):
            seen.append(item["id"])
    assert seen == [1, 2, 3]  # what was yielded stays yielded
    assert source.requested == [None, "c1", "c2"]


async def test_next_token_after_each_page_is_the_resume_point() -> None:
    source = Source(chain(3))
    pager = PageIterator("list-things", source.fetch)
    cursors = []
    async for _page in pager:
        cursors.append(pager.next_token)
    assert cursors == ["c1", "c2", None]
    resumed = PageIterator("list-things", source.fetch, start_token="c2")
    assert [item["id"] async for item in ItemIterator(resumed)] == [4, 5]


async def test_max_items_and_max_pages() -> None:
    source = Source(chain(5))
    items = [i["id"] async for i in ItemIterator(PageIterator("list-things", source.fetch), max_items=3)]
    assert items == [0, 1, 2]
    assert source.requested == [None, "c1"]
    source2 = Source(chain(5))
    pages = [p async for p in PageIterator("list-things", source2.fetch, max_pages=2)]
    assert [len(p) for p in pages] == [2, 2]
    assert source2.requested == [None, "c1"]


async def test_total_is_exposed_when_the_server_sends_it() -> None:
    source = Source(chain(2), total=4)
    pager = PageIterator("list-things", source.fetch)
    async for _ in pager:
        pass
    assert pager.total == 4


async def test_empty_start_token_is_refused() -> None:
    with pytest.raises(ValueError, match="start_token"):
        PageIterator("list-things", Source({}).fetch, start_token="")


async def test_prefetches_exactly_one_page_ahead() -> None:
    source = Source(chain(4))
    async with anyio.create_task_group() as tg:
        pager = PageIterator("list-things", source.fetch, spawner=tg)
        first = await pager.__anext__()
        assert first.token is None
        for _ in range(5):
            await anyio.sleep(0)
        assert source.requested == [None, "c1"]  # one ahead, not more
        second = await pager.__anext__()
        assert second.token == "c1"
        for _ in range(5):
            await anyio.sleep(0)
        assert source.requested == [None, "c1", "c2"]
        await pager.aclose()


async def test_breaking_out_cancels_the_prefetch_and_leaves_no_task() -> None:
    source = Source(chain(4))
    source.gate = anyio.Event()  # later pages hang until released
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            async for _page in PageIterator("list-things", source.fetch, spawner=tg):
                for _ in range(5):
                    await anyio.sleep(0)  # the prefetch of c1 starts and blocks on the gate
                assert source.in_flight == 1
                break

        await consume()
        gc.collect()
        with anyio.fail_after(5):
            while source.in_flight:
                await anyio.sleep(0)
        assert source.requested == [None, "c1"]
        assert source.in_flight == 0
    # the task group exited without waiting on the gate: nothing was left running


async def test_aclose_cancels_a_prefetch_in_flight() -> None:
    source = Source(chain(3))
    source.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        async with PageIterator("list-things", source.fetch, spawner=tg) as pager:
            await pager.__anext__()
            for _ in range(3):
                await anyio.sleep(0)
            assert source.in_flight == 1
        assert source.in_flight == 0


async def test_a_failed_prefetch_raises_in_the_consumer() -> None:
    pages = chain(3)
    del pages["c1"]
    source = Source(pages)
    async with anyio.create_task_group() as tg:
        pager = PageIterator("list-things", source.fetch, spawner=tg)
        await pager.__anext__()
        with pytest.raises(KeyError):
            await pager.__anext__()
        with pytest.raises(StopAsyncIteration):
            await pager.__anext__()


async def test_an_item_that_cannot_be_converted_names_its_field() -> None:
    def convert(item: dict[str, Any]) -> str:
        return str(item["name"])

    page: Page[str] = Page(
        operation="list-things", raw=[{"name": "a"}, {}], next_token=None, total=None, token=None,
        request_id="req-9", convert=convert,
    )
    assert page.item(0) == "a"
    with pytest.raises(ResponseValidationError) as info:
        page.item(1)
    assert info.value.field == "data[1].name"
    assert info.value.request_id == "req-9"


async def test_items_before_an_unconvertible_one_are_still_yielded() -> None:
    def convert(item: dict[str, Any]) -> str:
        return str(item["name"])

    async def fetch(token: str | None) -> Page[str]:
        return Page(operation="list-things", raw=[{"name": "a"}, {"name": "b"}, {}, {"name": "d"}], next_token=None,
                    total=None, token=token, request_id="req-3", convert=convert)

    seen = []
    with pytest.raises(ResponseValidationError) as info:
        async for name in ItemIterator(PageIterator("list-things", fetch)):
            seen.append(name)
    assert seen == ["a", "b"]
    assert info.value.field == "data[2].name"
