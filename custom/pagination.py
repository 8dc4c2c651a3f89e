"""Cursor pagination: async iterators over pages and items, with one page of prefetch.

Amperity's lists end when ``next_token`` is absent, null or empty (an empty ``data`` is not the
end), and ``next_token`` must never be sent null or empty. The cursor of the next page is exposed
after every page, for checkpoints.

A server whose cursors never end the list must not make the iterator loop, nor deliver an item
twice. Three guards stop it with ``PaginationError``, each after delivering what was genuinely new:
a cursor seen before; too many pages in a row that bring no new item (empty pages under ever-new
cursors); and a page whose items were all delivered already (the same items under new cursors).
Items are told apart by the operation's item key (``id``, ``event_id``) or, for schemas without
one, by their whole content; an item that repeats one of the previous page is dropped, so a page
that is partly new delivers its new items.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import attrs

from .errors import ConfigurationError, PaginationError, ResponseValidationError
from .prefetch import Ahead, Prefetcher, TaskGroupPrefetcher

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigurationError(
            f"{attribute.name} must be a whole number >= 1, or None for no cap; got {value!r}"
        )


@attrs.frozen
class PaginationGuards:
    """When to give up on a list whose cursors do not end it (a ``PaginationError`` then).

    - ``max_empty_pages``: the most pages in a row that bring no new item (empty, or only items
      delivered already) while their cursor says the list goes on. Default 100, about ten seconds
      of the control-plane budget; a filter that matches few items of a long list may need more.
    - ``max_repeated_pages``: the most pages in a row whose items were all delivered already
      (the same items under a new cursor). Default 1: the first such page stops the list.

    ``None`` removes a cap: only for a server you trust. Set them per client
    (``AmperityClient(pagination_guards=...)``) or per call (``client.pages(..., pagination_guards=...)``).
    """

    max_empty_pages: int | None = attrs.field(default=100, validator=_at_least_one)
    max_repeated_pages: int | None = attrs.field(default=1, validator=_at_least_one)


@attrs.define(eq=False)
class Page(Generic[T]):
    """One page of a list operation.

    ``raw`` holds the page's items as the server sent them (JSON objects, checked against the spec),
    less any it had sent already (counted in ``repeated``); ``data`` converts them to the generated
    models on first access.
    """

    operation: str
    raw: list[Any]
    next_token: str | None
    total: int | None
    token: str | None
    request_id: str | None
    _convert: Callable[[Any], T] = attrs.field(repr=False)
    repeated: int = attrs.field(default=0, kw_only=True)
    """Items the server sent on this page that had been delivered already (left out of ``raw``)."""
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
                operation=self.operation,
                field=field,
                detail=f"{type(exc).__name__}: {exc}",
                request_id=self.request_id,
            ) from exc

    @property
    def has_next(self) -> bool:
        return self.next_token is not None

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)


ReadPage = Callable[[], Page[T]]
FetchPage = Callable[[str | None], Coroutine[Any, Any, Page[T] | ReadPage[T]]]
"""Fetches the page after a cursor (None: the first page): the page, or a function that reads it
from what was received. A prefetch then holds only the received bytes; the page's items are decoded
when the caller asks for the page, so they live in memory for a shorter time."""


_STR_ONLY = {str}


def _whole(item: Any) -> Hashable:
    return ("whole", json.dumps(item, sort_keys=True, separators=(",", ":"), default=str))


def page_identities(item_key: str | None) -> Callable[[list[Any]], list[Hashable]]:
    """What tells the items of a page apart: the value of ``item_key``, else the whole item."""

    def by_key(item: Any) -> Hashable:
        value = item.get(item_key) if isinstance(item, dict) else None
        return value if isinstance(value, (str, int)) else _whole(item)

    def identities(raw: list[Any]) -> list[Hashable]:
        if item_key is not None:
            # Every item carries its key as a string: one pass in C (this runs for every page).
            try:
                keys = [item[item_key] for item in raw]
            except (KeyError, TypeError):
                pass
            else:
                if set(map(type, keys)) == _STR_ONLY:
                    return keys
            return [by_key(item) for item in raw]
        return [_whole(item) for item in raw]

    return identities


class _LoopGuard(Generic[T]):
    """Tells a list that progresses from one that loops, page by page, and keeps repeats out.

    It remembers every cursor, the identities of the previous non-empty page's items and a hash
    of each earlier page's identities (a page identical to any earlier one brings nothing new, so
    pages served in a cycle are caught too). Memory grows by one cursor and one hash per page.
    """

    def __init__(
        self,
        operation: str,
        guards: PaginationGuards,
        identities: Callable[[list[Any]], list[Hashable]],
        start_token: str | None,
    ) -> None:
        self._operation = operation
        self._guards = guards
        self._identities = identities
        self._cursors: set[str] = set() if start_token is None else {start_token}
        self._previous: set[Hashable] = set()
        self._page_hashes: set[int] = set()
        self._stalled = 0  # pages in a row without a new item
        self._repeated = 0  # of those, pages whose items were all delivered already

    def check(self, page: Page[T], pages_fetched: int) -> tuple[Page[T], PaginationError | None]:
        """The page with only its new items, and why the list must stop after it (or None)."""
        page = self._fresh(page)
        if page.raw:
            self._stalled = self._repeated = 0
        else:
            self._stalled += 1
            self._repeated = self._repeated + 1 if page.repeated else 0
        token = page.next_token
        if token is None:
            return page, None
        if token in self._cursors:
            return page, PaginationError(
                f"{self._operation}: the server returned cursor {token!r} a second time "
                f"(after {pages_fetched} pages); stopping instead of looping"
            )
        self._cursors.add(token)
        max_repeated, max_empty = self._guards.max_repeated_pages, self._guards.max_empty_pages
        if max_repeated is not None and self._repeated >= max_repeated:
            return page, PaginationError(
                f"{self._operation}: {self._repeated} page(s) in a row held only items delivered already, "
                f"each under a new cursor (after {pages_fetched} pages); stopping instead of delivering "
                f"them again (max_repeated_pages={max_repeated})"
            )
        if max_empty is not None and self._stalled >= max_empty:
            return page, PaginationError(
                f"{self._operation}: {self._stalled} pages in a row brought no new item, each with a new "
                f"cursor (after {pages_fetched} pages); stopping instead of following more. A filter that "
                f"matches few items of a long list may need PaginationGuards(max_empty_pages=...) above "
                f"{max_empty}; resume from the iterator's next_token"
            )
        return page, None

    def _fresh(self, page: Page[T]) -> Page[T]:
        if not page.raw:
            return page
        identities = self._identities(page.raw)
        page_hash = hash(tuple(identities))
        current = set(identities)
        previous = current if page_hash in self._page_hashes else self._previous
        self._page_hashes.add(page_hash)
        self._previous = current
        if len(current) == len(identities) and previous.isdisjoint(current):
            return page  # the usual case: nothing repeats
        seen = set(previous)
        fresh = []
        for item, identity in zip(page.raw, identities, strict=True):
            if identity not in seen:
                seen.add(identity)
                fresh.append(item)
        return attrs.evolve(page, raw=fresh, repeated=page.repeated + len(page.raw) - len(fresh))


def _read_checked(
    got: Page[T] | ReadPage[T], guard: _LoopGuard[T], count: int
) -> tuple[Page[T], PaginationError | None]:
    """Page number ``count`` as fetched, checked by the loop guard."""
    page = got if isinstance(got, Page) else got()
    if not page.next_token:
        page.next_token = None  # "" ends the list just as an absent or null cursor does
    return guard.check(page, count)


class PageIterator(Generic[T]):
    """``async for page in client.pages(...)``: whole pages, following cursors.

    After each page, ``next_token`` is the cursor to resume from (None once the list is done);
    ``max_pages`` stops after that many pages, with ``next_token`` where the list goes on. A list
    that does not progress raises ``PaginationError`` (see ``PaginationGuards``): after the page
    that brought new items, or instead of a page that brought none, ``next_token`` then still
    pointing after the last page delivered. With a ``prefetcher`` (or an anyio task group as
    ``spawner``) the next page is fetched while the caller works on the current one; breaking out
    of the loop, ``aclose()`` or leaving ``async with`` cancels a prefetch in flight.
    """

    def __init__(
        self,
        operation: str,
        fetch: FetchPage[T],
        *,
        start_token: str | None = None,
        max_pages: int | None = None,
        spawner: anyio.abc.TaskGroup | None = None,
        prefetcher: Prefetcher | None = None,
        item_key: str | None = None,
        guards: PaginationGuards | None = None,
    ) -> None:
        if start_token is not None and not start_token:
            raise ValueError("start_token must be a cursor from a previous page, not an empty string")
        if max_pages is not None and max_pages < 0:
            raise ValueError(f"max_pages must be >= 0, got {max_pages}")
        self.operation = operation
        self._fetch = fetch
        self._prefetcher = prefetcher or (TaskGroupPrefetcher(spawner) if spawner is not None else None)
        self._max_pages = max_pages
        self.next_token: str | None = start_token
        self.total: int | None = None
        self.pages_fetched = 0
        self._started = False
        self._finished = max_pages == 0
        self._guard: _LoopGuard[T] = _LoopGuard(
            operation, guards or PaginationGuards(), page_identities(item_key), start_token
        )
        self._ahead: Ahead[Page[T] | ReadPage[T]] | None = None
        self._stop: PaginationError | None = None

    def __aiter__(self) -> PageIterator[T]:
        return self

    async def __anext__(self) -> Page[T]:
        if self._stop is not None:
            pending, self._stop = self._stop, None
            self._finished = True
            raise pending
        if self._finished or (self._started and self.next_token is None):
            self._finished = True
            raise StopAsyncIteration
        ahead, self._ahead = self._ahead, None
        try:
            got = await (ahead.result() if ahead is not None else self._fetch(self.next_token))
            page, stop = _read_checked(got, self._guard, self.pages_fetched + 1)
        except BaseException:
            self._finished = True
            raise
        self._started = True
        self.pages_fetched += 1
        self.total = page.total if page.total is not None else self.total
        if stop is not None and not page.raw:
            # Nothing new to deliver: stop at once, next_token still after the last page delivered.
            self._finished = True
            raise stop
        next_token = self.next_token = page.next_token
        if stop is not None:
            self._stop = stop  # raised on the next call, once this page's new items are delivered
            return page
        if self._max_pages is not None and self.pages_fetched >= self._max_pages:
            self._finished = True
        elif next_token is not None and self._prefetcher is not None:
            # The fetch holds no reference to this iterator: one left with `break` is collected,
            # and its fetch cancelled, at once.
            self._ahead = self._prefetcher.start(self._fetch(next_token))
        return page

    def __del__(self) -> None:
        # A loop left with `break` drops the iterator without closing it: cancel the fetch then.
        ahead = self.__dict__.get("_ahead")
        if ahead is not None:
            ahead.cancel()

    async def aclose(self) -> None:
        self._finished = True
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            with anyio.CancelScope(shield=True):
                await ahead.wait()

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
            failure, self._failure = self._failure, None
            if failure is not None:
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
