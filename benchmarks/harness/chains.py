"""Static Amperity-shaped pages: lists as chains of files whose ``next_token`` names the next file.

The items come from the fake tenant's own data generator (read over HTTP, as a client would), so
the pages are what the fake tenant serves and valid against the spec; only the cursors change:
``p000001`` names ``p000001.json``, and the last page has no ``next_token``. A static server then
answers any number of requests for the cost of reading a file, and the client does all the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .settings import PAGE_SIZE, SEED

API_BASE = "/api"
FIRST_PAGE = "p000000"
_CURSOR = re.compile(r"^p[0-9]{6}$")
_LIST_ID = "[A-Za-z0-9_-]+"
_FAKE_LIMIT = 1000  # the fake tenant's largest page: fewer requests while generating


@dataclass(frozen=True)
class PageKind:
    """One list the benchmark reads: where it is requested and where its pages are kept."""

    name: str
    label: str
    module: str
    """The operation's module under a generated package's ``api`` (the same in every generated client)."""
    api_version: str
    folder: str
    path_template: str
    """The request path under the API base; ``{index}`` is the profile index's id."""

    @property
    def operation(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    @property
    def takes_index(self) -> bool:
        """Whether the operation takes the profile index's id as its path argument."""
        return "{index}" in self.path_template

    def path(self, index_id: str | None) -> str:
        return self.path_template.format(index=index_id or "")

    @property
    def route(self) -> str:
        """A regular expression for every request path of this list, API base included (nginx's too);
        the group ``bench_list`` is the id of the list asked for (a profile index)."""
        return "^" + API_BASE + self.path_template.replace("{index}", f"(?P<bench_list>{_LIST_ID})") + "$"


SEGMENT = PageKind("segment", "Segment page", "segments.list_segment", "2024-04-01", "segments", "/segments")
PROFILE = PageKind(
    "profile", "Profile page", "profiles.list_profiles", "2025-07-31", "profiles", "/indexes/{index}/profiles"
)
KINDS = (SEGMENT, PROFILE)


def cursor_of(page_number: int) -> str:
    if not 0 <= page_number < 1_000_000:
        raise ValueError(f"page number {page_number} does not fit a six-digit cursor")
    return f"p{page_number:06d}"


def list_folder(root: Path, kind: PageKind, list_id: str | None) -> Path:
    """Where a list's pages are: one folder per kind, and per index for lists under an index."""
    if not kind.takes_index:
        return root / kind.folder
    if list_id is None or not re.fullmatch(_LIST_ID, list_id):
        raise ValueError(f"{kind.label.lower()}s are kept per index, not under {list_id!r}")
    return root / kind.folder / list_id


def page_file(root: Path, kind: PageKind, next_token: str | None, list_id: str | None = None) -> Path | None:
    """The file answering a request with this ``next_token`` (None or empty: the first page) for the
    list ``list_id``; None when they name no page. nginx's configuration maps requests the same way."""
    name = next_token or FIRST_PAGE
    if not _CURSOR.match(name) or (kind.takes_index and not re.fullmatch(_LIST_ID, list_id or "")):
        return None
    path = list_folder(root, kind, list_id) / f"{name}.json"
    return path if path.is_file() else None


class IdDigest:
    """A count and an order-free digest of item ids: equal for the same ids in any order, and
    different (but for a 2**-64 chance) when one is missing or doubled."""

    def __init__(self) -> None:
        self.count = 0
        self._total = 0

    def add(self, ident: str) -> None:
        self.count += 1
        self._total += int.from_bytes(hashlib.blake2b(ident.encode(), digest_size=8).digest(), "big")

    @property
    def value(self) -> int:
        return self._total % (1 << 64)

    @classmethod
    def of(cls, ids: Iterable[str]) -> IdDigest:
        digest = cls()
        for ident in ids:
            digest.add(ident)
        return digest


@dataclass(frozen=True)
class Chain:
    """One static list: its pages, rows and the digest of its item ids."""

    kind: str
    list_id: str | None
    """The profile index id it is requested under (None for segments)."""
    pages: int
    rows: int
    mean_page_bytes: float
    ids_digest: int


@dataclass(frozen=True)
class StaticLists:
    segment: Chain
    profile: Chain
    profile_heads: dict[int, Chain]
    """The first N rows of the profile list, each a whole list of its own (under its own index id):
    a CLI run reads one to its natural end."""

    def of(self, kind: PageKind) -> Chain:
        return self.segment if kind is SEGMENT else self.profile


class _ChainWriter:
    """Turns a stream of items into 100-item page files linked by their cursors."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.pending: list[Any] = []
        self.pages = 0
        self.bytes = 0
        self.ids = IdDigest()

    def add(self, items: list[Any]) -> None:
        self.pending += items
        for item in items:
            self.ids.add(item["id"])
        # A full page is written once the next one has started, so that it knows it is not the last.
        while len(self.pending) > PAGE_SIZE:
            self._write(self.pending[:PAGE_SIZE], last=False)
            del self.pending[:PAGE_SIZE]

    def finish(self) -> None:
        if len(self.pending) != PAGE_SIZE:
            raise ValueError(f"{self.ids.count} items do not make whole pages of {PAGE_SIZE}")
        self._write(self.pending, last=True)
        self.pending = []

    def _write(self, items: list[Any], *, last: bool) -> None:
        body: dict[str, Any] = {"data": items}
        if not last:
            body["next_token"] = cursor_of(self.pages + 1)
        data = orjson.dumps(body)
        (self.folder / f"{cursor_of(self.pages)}.json").write_bytes(data)
        self.pages += 1
        self.bytes += len(data)


async def _copy_list(
    http: Any, url: str, headers: dict[str, str], writer: _ChainWriter, rows: int | None = None
) -> None:
    """The fake tenant's list at ``url`` (its first ``rows`` items, when given) into ``writer``."""
    next_token: str | None = None
    while True:
        params = {"limit": str(_FAKE_LIMIT)} | ({"next_token": next_token} if next_token else {})
        async with http.get(url, params=params, headers=headers) as response:
            body = orjson.loads(await response.read())
            if response.status != 200:
                raise RuntimeError(f"the fake tenant answered {response.status} to GET {url}: {body}")
        items = body["data"] if rows is None else body["data"][: rows - writer.ids.count]
        writer.add(items)
        next_token = body.get("next_token") or None
        if next_token is None or writer.ids.count == rows:
            writer.finish()
            return


async def _generate(root: Path, segment_rows: int, profile_rows: int, heads: tuple[int, ...]) -> StaticLists:
    import aiohttp

    from amperity_async.testing import FakeTenant

    tenant = FakeTenant(
        rows=segment_rows, indexes=1, profiles_per_index=profile_rows, rate_limits=False, seed=SEED
    )
    async with tenant, aiohttp.ClientSession() as http:
        token = tenant.issue_token()

        def headers(kind: PageKind) -> dict[str, str]:
            return {
                "Authorization": f"Bearer {token}",
                "amperity-tenant": tenant.tenant,
                "api-version": kind.api_version,
            }

        async def copy(
            kind: PageKind, index_id: str | None, list_id: str | None, rows: int | None = None
        ) -> Chain:
            writer = _ChainWriter(list_folder(root, kind, list_id))
            await _copy_list(http, tenant.base_url + kind.path(index_id), headers(kind), writer, rows)
            return Chain(
                kind=kind.name,
                list_id=list_id,
                pages=writer.pages,
                rows=writer.ids.count,
                mean_page_bytes=writer.bytes / writer.pages,
                ids_digest=writer.ids.value,
            )

        async with http.get(tenant.base_url + "/indexes", headers=headers(PROFILE)) as response:
            index_id = str(orjson.loads(await response.read())["data"][0]["id"])
        return StaticLists(
            segment=await copy(SEGMENT, None, None),
            profile=await copy(PROFILE, index_id, index_id),
            profile_heads={
                rows: await copy(PROFILE, index_id, f"{index_id}-first-{rows}", rows) for rows in heads
            },
        )


def generate_lists(
    root: Path, *, segment_rows: int, profile_rows: int, heads: tuple[int, ...] = ()
) -> StaticLists:
    """Write the segment and profile lists under ``root``, and the profile list's first ``heads``
    rows as lists of their own (rows: whole pages)."""
    for rows in (segment_rows, profile_rows, *heads):
        if rows <= 0 or rows % PAGE_SIZE:
            raise ValueError(f"a static list holds whole pages of {PAGE_SIZE} items, not {rows} rows")
    if any(rows > profile_rows for rows in heads):
        raise ValueError(f"the first {max(heads)} rows of a {profile_rows}-row list do not exist")
    return asyncio.run(_generate(root, segment_rows, profile_rows, heads))
