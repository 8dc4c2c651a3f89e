"""The client variants, worker side: how each one walks a list, and the long-lived cell worker.

Each variant walks the static list page by page (starting over after the last page), as many tasks
at once as the round asks, and checks every page it reads (status, 100 items, the cursor), so a
server that answers the wrong thing fails the round instead of looking fast. The raw baselines do
the least a correct client must do; the project's variants go through its public API only.

A cell worker is one process per variant, pinned to the client CPU, that stays up for the whole
run: it sets up once, then measures one round per request read from stdin, so that rounds of
different variants interleave without paying for interpreter start-up each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from .chains import KINDS, PageKind
from .nginx import ACCESS_TOKEN
from .processes import own_cpu_seconds, own_peak_rss_mb, process_cpu_seconds
from .settings import CLIENT_ID, CLIENT_SECRET, PAGE_SIZE, TENANT

BASELINE = "aiohttp"
VARIANT_LABELS = {
    "aiohttp-http": "raw aiohttp, HTTP only (no JSON decode)",
    "aiohttp": "raw aiohttp + json.loads",
    "httpx-aiohttp": "raw httpx over httpx-aiohttp + JSON",
    "httpx": "raw httpx, default transport + JSON",
    "naive": "naive openapi-python-client (official spec, default httpx)",
    "call": "AmperityClient.call",
    "pages": "AmperityClient.pages",
    "paginate": "AmperityClient.paginate",
}
VARIANTS = tuple(VARIANT_LABELS)
TIMED = "timed"
_NEXT_TOKEN = b'"next_token":"'

# Reads one page of ``kind`` after ``token`` (None: the first page), checks it, and returns the
# cursor of the next page (None after the last page).
Fetch = Callable[[PageKind, str | None], Awaitable[str | None]]


class WrongPage(AssertionError):
    """The server answered something other than the page asked for."""


def _check_count(kind: PageKind, count: int) -> None:
    if count != PAGE_SIZE:
        raise WrongPage(f"a {kind.label.lower()} held {count} items, not {PAGE_SIZE}")


def _cursor(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _headers(kind: PageKind) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {ACCESS_TOKEN}",
        "amperity-tenant": TENANT,
        "api-version": kind.api_version,
    }


def _params(token: str | None) -> dict[str, str]:
    return {"limit": str(PAGE_SIZE), "next_token": token} if token else {"limit": str(PAGE_SIZE)}


class Variant:
    """A client set up once per worker; ``walk`` reads pages until ``deadline`` (perf_counter)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.base_url: str = spec["base_url"]
        self.index_id: str = spec["index_id"]
        self.spec = spec
        self.cleanup = contextlib.AsyncExitStack()

    def url(self, kind: PageKind) -> str:
        return self.base_url + kind.path(self.index_id)

    async def setup(self) -> None:
        """Open clients and sessions (register their closing on ``self.cleanup``)."""

    async def fetch(self, kind: PageKind, token: str | None) -> str | None:
        raise NotImplementedError

    async def walk(self, kind: PageKind, deadline: float) -> int:
        pages, token = 0, None
        while True:
            sent, token = token, await self.fetch(kind, token)
            if token is not None and token == sent:
                raise WrongPage(f"the cursor after {sent} is {sent} again: the same page was read twice")
            pages += 1
            if time.perf_counter() >= deadline:
                return pages


class RawAiohttp(Variant):
    """aiohttp as its users write it; ``decode`` False reads the bytes and finds the cursor in them."""

    decode = True

    async def setup(self) -> None:
        import aiohttp

        self.session = await self.cleanup.enter_async_context(aiohttp.ClientSession())
        self.headers = {kind.name: _headers(kind) for kind in KINDS}

    async def fetch(self, kind: PageKind, token: str | None) -> str | None:
        async with self.session.get(
            self.url(kind), params=_params(token), headers=self.headers[kind.name]
        ) as r:
            if r.status != 200:
                raise WrongPage(f"HTTP {r.status} for {r.url}")
            body = await r.read()
        if self.decode:
            page = json.loads(body)
            _check_count(kind, len(page["data"]))
            return _cursor(page.get("next_token"))
        at = body.rfind(_NEXT_TOKEN)
        if at < 0:
            return None
        start = at + len(_NEXT_TOKEN)
        return body[start : body.index(b'"', start)].decode()


class RawAiohttpHttpOnly(RawAiohttp):
    decode = False


class RawHttpx(Variant):
    """httpx with its default transport, or over httpx-aiohttp (the project's inner transport)."""

    over_aiohttp = False

    async def setup(self) -> None:
        import httpx

        options: dict[str, Any] = {}
        if self.over_aiohttp:
            from httpx_aiohttp import AiohttpTransport

            # The pool size of the project client's default transport.
            options["transport"] = AiohttpTransport(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
            )
        self.http = await self.cleanup.enter_async_context(
            httpx.AsyncClient(base_url=self.base_url, **options)
        )
        self.headers = {kind.name: _headers(kind) for kind in KINDS}

    async def fetch(self, kind: PageKind, token: str | None) -> str | None:
        response = await self.http.get(
            kind.path(self.index_id), params=_params(token), headers=self.headers[kind.name]
        )
        response.raise_for_status()
        page = response.json()
        _check_count(kind, len(page["data"]))
        return _cursor(page.get("next_token"))


class RawHttpxOverAiohttp(RawHttpx):
    over_aiohttp = True


class NaiveGenerated(Variant):
    """The client openapi-python-client generates from the official documents, used as documented."""

    async def setup(self) -> None:
        from .naive import package_name

        self.calls: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.clients: dict[str, Any] = {}
        self.unset: dict[str, Any] = {}
        for kind in KINDS:
            folder = self.spec["naive"][kind.name]
            sys.path.insert(0, folder)
            package = package_name(folder)
            client_module = importlib.import_module(f"{package}.client")
            self.calls[kind.name] = importlib.import_module(f"{package}.api.{kind.module}").asyncio
            self.unset[kind.name] = importlib.import_module(f"{package}.types").UNSET
            client = client_module.AuthenticatedClient(base_url=self.base_url, token=ACCESS_TOKEN)
            self.clients[kind.name] = await self.cleanup.enter_async_context(client)

    async def fetch(self, kind: PageKind, token: str | None) -> str | None:
        args = (self.index_id,) if kind.takes_index else ()
        page = await self.calls[kind.name](
            *args,
            client=self.clients[kind.name],
            limit=PAGE_SIZE,
            next_token=token or self.unset[kind.name],
            amperity_tenant=TENANT,
        )
        if not hasattr(page, "data"):
            raise WrongPage(f"the naive client parsed {page!r} instead of a {kind.label.lower()}")
        _check_count(kind, len(page.data))
        return _cursor(page.next_token)


class Project(Variant):
    """AmperityClient through its public API: tokens, checks, retries, limits that never wait."""

    async def setup(self) -> None:
        import amperity_async
        from amperity_async import AmperityClient, ClientCredentials, TokenBucket

        # Limits off, but through a bucket, so that its bookkeeping is measured as a user pays it.
        self.client = await self.cleanup.enter_async_context(
            AmperityClient(
                tenant=TENANT,
                auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
                base_url=self.base_url,
                rate_limit=TokenBucket(1e9, capacity=1e9),
                profile_rate_limit=TokenBucket(1e9, capacity=1e9),
            )
        )
        self.operations = {
            kind.name: importlib.import_module(f"{amperity_async.__name__}.api.{kind.module}")
            for kind in KINDS
        }

    def args(self, kind: PageKind) -> tuple[str, ...]:
        return (self.index_id,) if kind.takes_index else ()


class ProjectCall(Project):
    async def fetch(self, kind: PageKind, token: str | None) -> str | None:
        more = {"next_token": token} if token else {}
        page = await self.client.call(self.operations[kind.name], *self.args(kind), limit=PAGE_SIZE, **more)
        _check_count(kind, len(page.data))
        return _cursor(page.next_token)


class ProjectPages(Project):
    async def walk(self, kind: PageKind, deadline: float) -> int:
        pages = 0
        while True:
            async with self.client.pages(
                self.operations[kind.name], *self.args(kind), limit=PAGE_SIZE
            ) as walker:
                async for page in walker:
                    _check_count(kind, len(page.raw))
                    _ = walker.next_token  # what a checkpointing user stores after each page
                    pages += 1
                    if time.perf_counter() >= deadline:
                        return pages


class ProjectPaginate(Project):
    async def walk(self, kind: PageKind, deadline: float) -> int:
        pages = 0
        while True:
            async with self.client.paginate(
                self.operations[kind.name], *self.args(kind), limit=PAGE_SIZE
            ) as items:
                count = 0
                async for item in items:
                    count += 1
                    if count % PAGE_SIZE == 0:
                        if not item.id:
                            raise WrongPage(f"a {kind.label.lower()} item has no id")
                        pages += 1
                        if time.perf_counter() >= deadline:
                            return pages
                if count % PAGE_SIZE:
                    _check_count(kind, count % PAGE_SIZE)


VARIANT_CLASSES: dict[str, type[Variant]] = {
    "aiohttp-http": RawAiohttpHttpOnly,
    "aiohttp": RawAiohttp,
    "httpx-aiohttp": RawHttpxOverAiohttp,
    "httpx": RawHttpx,
    "naive": NaiveGenerated,
    "call": ProjectCall,
    "pages": ProjectPages,
    "paginate": ProjectPaginate,
}
assert tuple(VARIANT_CLASSES) == VARIANTS


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def measure_round(variant: Variant, request: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then walk for ``seconds`` with ``tasks`` tasks: pages, wall time, this process's CPU."""
    kind = next(k for k in KINDS if k.name == request["kind"])
    tasks = int(request["tasks"])
    warmup_until = time.perf_counter() + float(request["warmup"])
    await asyncio.gather(*(variant.walk(kind, warmup_until) for _ in range(tasks)))
    _emit({"event": TIMED})  # a profiler may attach now
    server_pid = request.get("server_pid")
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    deadline = started + float(request["seconds"])
    pages = sum(await asyncio.gather(*(variant.walk(kind, deadline) for _ in range(tasks))))
    elapsed = time.perf_counter() - started
    cpu = own_cpu_seconds() - cpu_before
    server_after = process_cpu_seconds(server_pid) if server_pid else None
    return {
        "pages": pages,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "server_cpu_seconds": None
        if server_before is None or server_after is None
        else server_after - server_before,
        "peak_rss_mb": own_peak_rss_mb(),
    }


async def serve_cells(spec: dict[str, Any]) -> None:
    """The cell worker: set up ``spec["variant"]``, then one round per JSON line on stdin."""
    variant = VARIANT_CLASSES[spec["variant"]](spec)
    async with variant.cleanup:
        await variant.setup()
        _emit({"event": "ready"})
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line.strip():
                return  # end of input: the harness is done with this worker
            try:
                result = await measure_round(variant, json.loads(line))
            except Exception:
                _emit({"event": "failed", "error": traceback.format_exc()})
            else:
                _emit({"event": "result", **result})
