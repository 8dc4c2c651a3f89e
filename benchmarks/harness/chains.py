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
        """A regular expression for every request path of this list, API base included (nginx's too)."""
        return "^" + API_BASE + self.path_template.replace("{index}", "[^/]+") + "$"


SEGMENT = PageKind("segment", "Segment page", "segments.list_segment", "2024-04-01", "segments", "/segments")
PROFILE = PageKind(
    "profile", "Profile page", "profiles.list_profiles", "2025-07-31", "profiles", "/indexes/{index}/profiles"
)
KINDS = (SEGMENT, PROFILE)


def cursor_of(page_number: int) -> str:
    if not 0 <= page_number < 1_000_000:
        raise ValueError(f"page number {page_number} does not fit a six-digit cursor")
    return f"p{page_number:06d}"


def page_file(root: Path, kind: PageKind, next_token: str | None) -> Path | None:
    """The file answering a request with this ``next_token`` (None or empty: the first page);
    None when the token names no page. nginx's configuration maps requests the same way."""
    name = next_token or FIRST_PAGE
    if not _CURSOR.match(name):
        return None
    path = root / kind.folder / f"{name}.json"
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
    kind: str
    pages: int
    rows: int
    mean_page_bytes: float
    ids_digest: int
    index_id: str | None


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


async def _copy_list(http: Any, url: str, headers: dict[str, str], writer: _ChainWriter) -> None:
    next_token: str | None = None
    while True:
        params = {"limit": str(_FAKE_LIMIT)} | ({"next_token": next_token} if next_token else {})
        async with http.get(url, params=params, headers=headers) as response:
            body = orjson.loads(await response.read())
            if response.status != 200:
                raise RuntimeError(f"the fake tenant answered {response.status} to GET {url}: {body}")
        writer.add(body["data"])
        next_token = body.get("next_token") or None
        if next_token is None:
            writer.finish()
            return


async def _generate(root: Path, segment_rows: int, profile_rows: int) -> dict[str, Chain]:
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

        async with http.get(tenant.base_url + "/indexes", headers=headers(PROFILE)) as response:
            index_id = str(orjson.loads(await response.read())["data"][0]["id"])
        chains = {}
        for kind in KINDS:
            writer = _ChainWriter(root / kind.folder)
            await _copy_list(http, tenant.base_url + kind.path(index_id), headers(kind), writer)
            chains[kind.name] = Chain(
                kind=kind.name,
                pages=writer.pages,
                rows=writer.ids.count,
                mean_page_bytes=writer.bytes / writer.pages,
                ids_digest=writer.ids.value,
                index_id=index_id if kind is PROFILE else None,
            )
    return chains


def generate_chains(root: Path, *, segment_rows: int, profile_rows: int) -> dict[str, Chain]:
    """Write the segment and profile lists under ``root`` (rows: multiples of the page size)."""
    for rows in (segment_rows, profile_rows):
        if rows <= 0 or rows % PAGE_SIZE:
            raise ValueError(f"a static list holds whole pages of {PAGE_SIZE} items, not {rows} rows")
    return asyncio.run(_generate(root, segment_rows, profile_rows))
