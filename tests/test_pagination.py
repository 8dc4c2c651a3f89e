"""Cursor pagination, tested on the iterators themselves with an in-memory page source."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

from amperity_async.custom.errors import ConfigurationError, PaginationError, ResponseValidationError
from amperity_async.custom.pagination import ItemIterator, Page, PageIterator, PaginationGuards

pytestmark = pytest.mark.anyio


class Source:
    """Pages keyed by the cursor that fetches them (None: the first page)."""

    def __init__(
        self, pages: dict[str | None, tuple[list[Any], str | None]], *, total: int | None = None
    ) -> None:
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


def chain(
    n_pages: int, per_page: int = 2, last_token: str | None = None
) -> dict[str | None, tuple[list[Any], str | None]]:
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
        operation="list-things",
        raw=[{"name": "a"}, {}],
        next_token=None,
        total=None,
        token=None,
        request_id="req-9",
        convert=convert,
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
        return Page(
            operation="list-things",
            raw=[{"name": "a"}, {"name": "b"}, {}, {"name": "d"}],
            next_token=None,
            total=None,
            token=token,
            request_id="req-3",
            convert=convert,
        )

    seen = []
    with pytest.raises(ResponseValidationError) as info:
        async for name in ItemIterator(PageIterator("list-things", fetch)):
            seen.append(name)
    assert seen == ["a", "b"]
    assert info.value.field == "data[2].name"


# servers whose cursors never end the list


class Endless:
    """A hostile source: ``pages`` first, then ``forever`` again and again, always under a new cursor."""

    def __init__(self, pages: list[list[Any]], forever: list[list[Any]]) -> None:
        self.pages, self.forever = pages, forever
        self.requested: list[str | None] = []

    async def fetch(self, token: str | None) -> Page[dict[str, Any]]:
        n = len(self.requested)
        self.requested.append(token)
        raw = (
            self.pages[n] if n < len(self.pages) else self.forever[(n - len(self.pages)) % len(self.forever)]
        )
        return Page(
            operation="list-things",
            raw=[dict(item) for item in raw],
            next_token=f"c{n + 1}",
            total=None,
            token=token,
            request_id=None,
            convert=lambda item: dict(item),
        )


def ids(*numbers: int) -> list[dict[str, Any]]:
    return [{"id": f"id-{n}", "name": f"thing {n}"} for n in numbers]


async def drain(pager: PageIterator[dict[str, Any]]) -> tuple[list[str], PaginationError | None]:
    """Every item id the iterator yields, and the PaginationError it ends with (None: a clean end)."""
    seen: list[str] = []
    try:
        async for item in ItemIterator(pager):
            seen.append(item["id"])
    except PaginationError as exc:
        return seen, exc
    return seen, None


async def test_empty_pages_under_ever_new_cursors_stop_after_max_empty_pages() -> None:
    server = Endless([ids(1, 2, 3)], forever=[[]])
    pager = PageIterator(
        "list-things", server.fetch, item_key="id", guards=PaginationGuards(max_empty_pages=5)
    )
    seen, error = await drain(pager)
    assert seen == ["id-1", "id-2", "id-3"]
    assert error is not None and "5 pages in a row brought no new item" in str(error)
    assert len(server.requested) == 1 + 5  # the page with items, then five empty ones: no more
    # Resuming is lossless: from the cursor that fetched the fifth empty page.
    assert pager.next_token == "c5" == server.requested[-1]
    with pytest.raises(StopAsyncIteration):
        await pager.__anext__()  # raised once, then finished like any iterator


async def test_the_default_cap_on_empty_pages_is_100() -> None:
    server = Endless([], forever=[[]])
    seen, error = await drain(PageIterator("list-things", server.fetch, item_key="id"))
    assert seen == [] and error is not None
    assert len(server.requested) == PaginationGuards().max_empty_pages == 100


async def test_the_same_items_under_ever_new_cursors_are_delivered_once() -> None:
    server = Endless([], forever=[ids(*range(10))])
    pager = PageIterator("list-things", server.fetch, item_key="id")
    seen, error = await drain(pager)
    assert seen == [f"id-{n}" for n in range(10)]
    assert error is not None and "only items delivered already" in str(error)
    assert server.requested == [None, "c1"]
    assert pager.next_token == "c1"  # after the one page that was delivered


async def test_a_partly_new_page_delivers_its_new_items_and_the_list_goes_on() -> None:
    source = Source(
        {
            None: (ids(1, 2, 3), "c1"),
            "c1": (ids(3, 4, 5), "c2"),  # overlaps the previous page by one item
            "c2": (ids(5, 6), None),
        }
    )
    pages = [page async for page in PageIterator("list-things", source.fetch, item_key="id")]
    assert [[item["id"] for item in page.raw] for page in pages] == [
        ["id-1", "id-2", "id-3"],
        ["id-4", "id-5"],
        ["id-6"],
    ]
    assert [page.repeated for page in pages] == [0, 1, 1]


async def test_a_partly_new_page_then_the_same_items_forever() -> None:
    server = Endless([ids(1, 2, 3)], forever=[ids(2, 3, 4)])
    seen, error = await drain(PageIterator("list-things", server.fetch, item_key="id"))
    assert seen == ["id-1", "id-2", "id-3", "id-4"]
    assert error is not None
    assert len(server.requested) == 3


async def test_pages_served_in_a_cycle_are_caught() -> None:
    server = Endless([], forever=[ids(1, 2), ids(3, 4), ids(5)])
    seen, error = await drain(PageIterator("list-things", server.fetch, item_key="id"))
    assert seen == ["id-1", "id-2", "id-3", "id-4", "id-5"]
    assert error is not None
    assert len(server.requested) == 4  # the fourth page is the first one again


async def test_a_repeat_across_empty_pages_is_still_a_repeat() -> None:
    server = Endless([ids(1, 2)], forever=[[], ids(1, 2)])
    seen, error = await drain(PageIterator("list-things", server.fetch, item_key="id"))
    assert seen == ["id-1", "id-2"]
    assert error is not None and "only items delivered already" in str(error)
    assert len(server.requested) == 3


async def test_empty_and_repeated_pages_together_count_toward_max_empty_pages() -> None:
    # Each repeated page is tolerated (max_repeated_pages=2 with an empty page between them), but
    # together they are pages without a new item.
    server = Endless([ids(1)], forever=[[], ids(1)])
    guards = PaginationGuards(max_empty_pages=6, max_repeated_pages=2)
    seen, error = await drain(PageIterator("list-things", server.fetch, item_key="id", guards=guards))
    assert seen == ["id-1"]
    assert error is not None and "6 pages in a row brought no new item" in str(error)
    assert len(server.requested) == 7


async def test_max_repeated_pages_above_one_tolerates_a_repeated_page() -> None:
    source = Source({None: (ids(1, 2), "c1"), "c1": (ids(1, 2), "c2"), "c2": (ids(3), None)})
    pager = PageIterator(
        "list-things", source.fetch, item_key="id", guards=PaginationGuards(max_repeated_pages=2)
    )
    seen, error = await drain(pager)
    assert (seen, error) == (["id-1", "id-2", "id-3"], None)


async def test_without_an_item_key_items_are_told_apart_by_their_content() -> None:
    rows = [{"name": "a", "n": 1}, {"n": 2, "name": "b"}]
    server = Endless(
        [rows], forever=[[{"name": "b", "n": 2}, {"name": "c", "n": 3}], [{"n": 3, "name": "c"}]]
    )
    pager = PageIterator("list-things", server.fetch, item_key=None)
    seen: list[Any] = []
    with pytest.raises(PaginationError):
        async for item in ItemIterator(pager):
            seen.append(item["name"])
    assert seen == ["a", "b", "c"]


async def test_items_missing_their_key_fall_back_to_their_content() -> None:
    server = Endless(
        [[{"id": "x"}, {"name": "no id"}]], forever=[[{"name": "no id"}, {"id": None, "name": "null id"}]]
    )
    pager = PageIterator("list-things", server.fetch, item_key="id")
    first = await pager.__anext__()
    second = await pager.__anext__()
    assert first.raw == [{"id": "x"}, {"name": "no id"}]
    assert second.raw == [{"id": None, "name": "null id"}] and second.repeated == 1


async def test_an_item_repeated_within_one_page_is_delivered_once() -> None:
    source = Source({None: (ids(1, 2, 1, 3, 2), None)})
    pages = [page async for page in PageIterator("list-things", source.fetch, item_key="id")]
    assert [item["id"] for item in pages[0].raw] == ["id-1", "id-2", "id-3"]
    assert pages[0].repeated == 2


async def test_guards_of_none_follow_a_long_sparse_list_to_its_end() -> None:
    pages: dict[str | None, tuple[list[Any], str | None]] = {None: ([], "c1")}
    for i in range(1, 150):
        pages[f"c{i}"] = ([], f"c{i + 1}")
    pages["c150"] = (ids(7), None)
    capped = await drain(PageIterator("list-things", Source(pages).fetch, item_key="id"))
    assert capped[0] == [] and capped[1] is not None
    unlimited = PaginationGuards(max_empty_pages=None)
    source = Source(pages)
    assert await drain(PageIterator("list-things", source.fetch, item_key="id", guards=unlimited)) == (
        ["id-7"],
        None,
    )
    assert len(source.requested) == 151


async def test_empty_pages_below_the_cap_are_delivered_with_their_cursor_for_checkpoints() -> None:
    source = Source({None: (ids(1), "c1"), "c1": ([], "c2"), "c2": ([], "c3"), "c3": (ids(2), None)})
    pager = PageIterator(
        "list-things", source.fetch, item_key="id", guards=PaginationGuards(max_empty_pages=3)
    )
    checkpoints = [(len(page), pager.next_token) async for page in pager]
    assert checkpoints == [(1, "c1"), (0, "c2"), (0, "c3"), (1, None)]


async def test_after_a_stop_the_checkpoint_resumes_without_loss_or_duplicates() -> None:
    server = Endless([ids(1, 2), ids(3, 4)], forever=[ids(3, 4)])
    pager = PageIterator("list-things", server.fetch, item_key="id")
    written: list[str] = []
    with pytest.raises(PaginationError):
        async for page in pager:
            written += [item["id"] for item in page.raw]
    assert written == ["id-1", "id-2", "id-3", "id-4"]
    # The server behaves again: from the checkpoint on, the list continues where it stopped.
    fixed = Source({pager.next_token: (ids(5), None)})
    resumed = PageIterator("list-things", fixed.fetch, start_token=pager.next_token, item_key="id")
    written += [item["id"] async for item in ItemIterator(resumed)]
    assert written == ["id-1", "id-2", "id-3", "id-4", "id-5"]


async def test_a_cursor_repeated_on_a_page_without_new_items_stops_at_once() -> None:
    source = Source({None: (ids(1), "c1"), "c1": ([], "c1")})
    pager = PageIterator("list-things", source.fetch, item_key="id")
    assert len(await pager.__anext__()) == 1
    with pytest.raises(PaginationError, match="cursor 'c1' a second time"):
        await pager.__anext__()
    assert pager.next_token == "c1"


async def test_a_stop_leaves_no_prefetch_running() -> None:
    server = Endless([ids(1)], forever=[ids(1)])
    async with anyio.create_task_group() as tg:
        pager = PageIterator("list-things", server.fetch, item_key="id", spawner=tg)
        seen, error = await drain(pager)
        for _ in range(5):
            await anyio.sleep(0)
        assert seen == ["id-1"] and error is not None
        assert len(server.requested) == 2  # nothing fetched ahead after the stop


async def test_max_pages_stops_without_error_and_resumes_where_it_stopped() -> None:
    source = Source(chain(5))
    first = PageIterator("list-things", source.fetch, max_pages=2)
    items = [item["id"] async for item in ItemIterator(first)]
    assert items == [0, 1, 2, 3]
    assert first.next_token == "c2"
    rest = PageIterator("list-things", source.fetch, start_token=first.next_token)
    assert [item["id"] async for item in ItemIterator(rest)] == [4, 5, 6, 7, 8, 9]


async def test_a_null_cursor_ends_the_list() -> None:
    source = Source({None: (ids(1), "c1"), "c1": (ids(2), None)})
    pager = PageIterator("list-things", source.fetch, item_key="id")
    assert await drain(pager) == (["id-1", "id-2"], None)
    assert pager.next_token is None


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_guard_limits_must_be_whole_numbers_from_one(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_empty_pages must be a whole number >= 1"):
        PaginationGuards(max_empty_pages=value)
    with pytest.raises(ConfigurationError, match="max_repeated_pages"):
        PaginationGuards(max_repeated_pages=value)
