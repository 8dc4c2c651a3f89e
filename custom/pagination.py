"""Cursor pagination: async iterators over pages and items, with one page of prefetch.

Amperity's lists end when ``next_token`` is absent or empty (an empty ``data`` is not the end),
and ``next_token`` must never be sent null or empty. A cursor seen twice would loop forever, so it
raises instead. The cursor of the next page is exposed after every page, for checkpoints.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import attrs

from .errors import AmperityError, PaginationError, ResponseValidationError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@attrs.define(eq=False)
class Page(Generic[T]):
    """One page of a list operation.

    ``raw`` holds the items as the server sent them (JSON objects, checked against the spec);
    ``data`` converts them to the generated models on first access.
    """

    operation: str
    raw: list[Any]
    next_token: str | None
    total: int | None
    token: str | None
    request_id: str | None
    _convert: Callable[[Any], T] = attrs.field(repr=False)
    _data: list[T] | None = attrs.field(default=None, init=False, repr=False)

    @property
    def data(self) -> list[T]:
        if self._data is None:
            convert = self._convert
            try:
                self._data = [convert(raw) for raw in self.raw]
            except (KeyError, TypeError, ValueError, AttributeError):
                self._data = [self.item(i) for i in range(len(self.raw))]  # raises, naming the item
        return self._data

    def item(self, index: int) -> T:
        """The item at ``index`` as a generated model."""
        try:
            return self._convert(self.raw[index])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            field = f"data[{index}]" + (f".{exc.args[0]}" if isinstance(exc, KeyError) and exc.args else "")
            raise ResponseValidationError(
                operation=self.operation, field=field, detail=f"{type(exc).__name__}: {exc}", request_id=self.request_id
            ) from exc

    @property
    def has_next(self) -> bool:
        return self.next_token is not None

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)


FetchPage = Callable[[str | None], Awaitable[Page[T]]]


@attrs.define(eq=False)
class _Prefetch(Generic[T]):
    """A page being fetched ahead; deliberately holds no reference to its iterator."""

    done: anyio.Event = attrs.field(factory=anyio.Event)
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    page: Page[T] | None = None
    error: BaseException | None = None

    def cancel(self) -> None:
        if not self.done.is_set():
            try:
                self.scope.cancel()
            except RuntimeError:
                pass  # the event loop is already gone, and the fetch with it

    async def run(self, fetch: FetchPage[T], token: str) -> None:
        try:
            with self.scope:
                try:
                    self.page = await fetch(token)
                except Exception as exc:  # handed to the consumer, who raises it in its own task
                    self.error = exc
        finally:
            if self.page is None and self.error is None:
                self.error = AmperityError("the client was closed while the next page was being fetched")
            self.done.set()


class PageIterator(Generic[T]):
    """``async for page in client.pages(...)``: whole pages, following cursors.

    After each page, ``next_token`` is the cursor to resume from (None once the list is done).
    Breaking out of the loop, ``aclose()`` or leaving ``async with`` cancels a prefetch in flight.
    """

    def __init__(
        self,
        operation: str,
        fetch: FetchPage[T],
        *,
        start_token: str | None = None,
        max_pages: int | None = None,
        spawner: anyio.abc.TaskGroup | None = None,
    ) -> None:
        if start_token is not None and not start_token:
            raise ValueError("start_token must be a cursor from a previous page, not an empty string")
        if max_pages is not None and max_pages < 0:
            raise ValueError(f"max_pages must be >= 0, got {max_pages}")
        self.operation = operation
        self._fetch = fetch
        self._spawner = spawner
        self._max_pages = max_pages
        self.next_token: str | None = start_token
        self.total: int | None = None
        self.pages_fetched = 0
        self._started = False
        self._finished = max_pages == 0
        self._seen: set[str] = set() if start_token is None else {start_token}
        self._ahead: _Prefetch[T] | None = None
        self._repeated: PaginationError | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __aiter__(self) -> PageIterator[T]:
        return self

    async def __anext__(self) -> Page[T]:
        if self._repeated is not None:
            self._finished = True
            raise self._repeated
        if self._finished or (self._started and self.next_token is None):
            self._finished = True
            raise StopAsyncIteration
        token = self.next_token
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await ahead.done.wait()
            if ahead.error is not None:
                self._finished = True
                raise ahead.error
            assert ahead.page is not None
            page = ahead.page
        else:
            try:
                page = await self._fetch(token)
            except BaseException:
                self._finished = True
                raise
        self._started = True
        self.pages_fetched += 1
        self.total = page.total if page.total is not None else self.total
        next_token = page.next_token or None
        self.next_token = next_token
        if next_token is not None and next_token in self._seen:
            # This page's items are still delivered; following the cursor again would loop.
            self._repeated = PaginationError(
                f"{self.operation}: the server returned cursor {next_token!r} a second time "
                f"(after {self.pages_fetched} pages); stopping instead of looping"
            )
            return page
        if next_token is not None:
            self._seen.add(next_token)
        if self._max_pages is not None and self.pages_fetched >= self._max_pages:
            self._finished = True
        elif next_token is not None and self._spawner is not None:
            self._start_prefetch(next_token)
        return page

    def _start_prefetch(self, token: str) -> None:
        assert self._spawner is not None
        ahead: _Prefetch[T] = _Prefetch()
        self._ahead = ahead
        fetch = self._fetch
        self._spawner.start_soon(ahead.run, fetch, token)
        # A loop left with `break` drops the iterator without closing it: cancel the fetch then.
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, ahead.cancel)

    async def aclose(self) -> None:
        self._finished = True
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            with anyio.CancelScope(shield=True):
                await ahead.done.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    async def __aenter__(self) -> PageIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ItemIterator(Generic[T]):
    """``async for item in client.paginate(...)``: items across pages, as generated models."""

    def __init__(self, pages: PageIterator[T], *, max_items: int | None = None) -> None:
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        self.pages = pages
        self._max_items = max_items
        self.items_yielded = 0
        self._items: Iterator[T] = iter(())
        self._failure: ResponseValidationError | None = None

    @property
    def next_token(self) -> str | None:
        """Cursor of the page after the current one (resume there once this page is processed)."""
        return self.pages.next_token

    @property
    def total(self) -> int | None:
        return self.pages.total

    def __aiter__(self) -> ItemIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._max_items is not None and self.items_yielded >= self._max_items:
            await self.pages.aclose()
            raise StopAsyncIteration
        while True:
            # A plain list iterator per page: the per-item cost stays at one next() call.
            for item in self._items:
                self.items_yielded += 1
                return item
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            page = await self.pages.__anext__()
            self._items, self._failure = _convert_page(page)

    async def aclose(self) -> None:
        await self.pages.aclose()

    async def __aenter__(self) -> ItemIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _convert_page(page: Page[T]) -> tuple[Iterator[T], ResponseValidationError | None]:
    """The page's items as models; if one cannot be converted, the ones before it and the error."""
    try:
        return iter(page.data), None
    except ResponseValidationError:
        good: list[T] = []
        for index in range(len(page.raw)):
            try:
                good.append(page.item(index))
            except ResponseValidationError as exc:
                return iter(good), exc
        raise


async def collect(items: AsyncIterator[T]) -> Sequence[T]:
    """All items of an iterator in a list (for small lists; stream large ones)."""
    return [item async for item in items]
