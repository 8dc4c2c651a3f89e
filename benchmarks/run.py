"""``make bench``: the client against the fake tenant on loopback, all sections in one run.

1. Throughput (rate limits off, 100-item pages, 1 / 10 / 50 concurrent tasks, each walking the
   pages of a long list and starting over at its end): raw httpx (default pool), raw httpx over
   httpx-aiohttp, raw aiohttp, and the full stack (``AmperityClient.paginate`` and ``.pages``:
   prefetch, response checks, tokens, retries, a rate limiter that never waits). Every raw
   baseline fetches, parses the JSON and reads ``next_token``. Each cell runs in its own process
   (peak RSS, isolation), cells are interleaved round by round so that machine noise hits all
   variants alike.
2. Rate fidelity: 50 tasks sharing the client's default 10/s control-plane bucket against the fake
   tenant's 10/s limit: achieved rate / 10 and the 429s the tenant answered.
3. Token refresh under load: 200 tasks across several expiries of short-lived tokens: token
   requests per renewal (the tenant counts token requests; the client's token requests are timed
   to group them by renewal).
4. Extraction under faults: ``extract_all`` against a fault-free tenant, then against one with
   10% 5xx, 2% dropped connections and one token revocation (same seed, same data): the same files
   with the same lines, and the wall-time ratio.

The fake tenant runs in a separate process pinned to CPU 0 and every client process is pinned to
CPU 1 (when the machine has two). Results go to benchmarks/results/latest.json and latest.md;
the table is printed.

    python benchmarks/run.py [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PAGE_SIZE = 100
TENANT, CLIENT_ID, CLIENT_SECRET = "acme", "fake-client", "fake-secret"
CONTROL_PLANE_VERSION = "2024-04-01"
THROUGHPUT_OPERATION = "list_segment"
THROUGHPUT_PATH = "/segments"

VARIANTS = ("httpx", "httpx-aiohttp", "aiohttp", "paginate", "pages")
VARIANT_LABELS = {
    "httpx": "raw httpx (default pool)",
    "httpx-aiohttp": "raw httpx over httpx-aiohttp",
    "aiohttp": "raw aiohttp",
    "paginate": "AmperityClient.paginate (full stack)",
    "pages": "AmperityClient.pages (full stack)",
}
HTTPX_COMPATIBLE = ("httpx", "httpx-aiohttp")
FULL_STACK = ("paginate", "pages")

# Targets of the benchmarks (measured, never asserted by tests).
TARGET_RATIO_VS_HTTPX_AIOHTTP = 0.80
TARGET_PAGES_PER_SECOND = 3000.0
TARGET_RATE_FIDELITY = 0.98
TARGET_TOKEN_REQUESTS_PER_RENEWAL = 1.0
# A second rate-fidelity run with rate_limit=TokenBucket(9.9): what a 1% margin under the limit gives.
RATE_WITH_MARGIN = 9.9


@dataclass(frozen=True)
class Settings:
    """How long and how big each section is; ``--quick`` and ``--smoke`` shrink them."""

    mode: str
    cell_seconds: float
    rounds: int
    concurrency: tuple[int, ...]
    throughput_rows: int
    rate_seconds: float
    rate_tasks: int
    token_seconds: float
    token_lifetime: float
    token_leeway: float
    token_tasks: int
    extract_rows: int
    extract_indexes: int
    extract_profiles: int

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        if mode == "full":
            return cls(mode, 2.0, 3, (1, 10, 50), 20_000, 30.0, 50, 10.0, 3.0, 1.0, 200, 1000, 3, 3000)
        if mode == "quick":
            return cls(mode, 1.0, 1, (1, 10, 50), 20_000, 10.0, 50, 6.0, 3.0, 1.0, 200, 500, 3, 1000)
        if mode == "smoke":
            return cls(mode, 0.2, 1, (1, 10, 50), 2_000, 1.0, 50, 2.0, 1.0, 0.3, 200, 100, 1, 200)
        raise ValueError(f"unknown mode {mode!r}")


# processes: the fake tenant and the client workers


def _cpu_sets() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): one core each when there are two or more, else no pinning."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(available) < 2:
        return None, None
    return {available[0]}, {available[1]}


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class TenantProcess:
    """``amperity-async fake-tenant`` as a child process (pinned to its own CPU), stopped with SIGINT."""

    def __init__(self, flags: Sequence[str], cpus: set[int] | None) -> None:
        self.flags = list(flags)
        self.cpus = cpus
        self.base_url = ""
        self.root_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._tail: list[str] = []

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "amperity_async", "fake-tenant", "--port", "0", *self.flags]
        self._proc = proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
        )
        if self.cpus is not None:
            os.sched_setaffinity(proc.pid, self.cpus)
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until the tenant prints where it listens (or exits)
            self._tail.append(line)
            if line.strip().startswith("AMPERITY_BASE_URL="):
                self.base_url = line.strip().split("=", 1)[1]
                self.root_url = self.base_url.rsplit("/api", 1)[0]
                break
        if not self.base_url:
            proc.wait(timeout=10)
            raise RuntimeError(
                f"the fake tenant did not start ({' '.join(self.flags)}):\n{''.join(self._tail)}"
            )
        # Whatever it prints later (warnings) must not fill the pipe and stall it.
        threading.Thread(target=self._drain, args=(proc.stdout,), daemon=True).start()
        return self

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self._tail = (self._tail + [line])[-50:]

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root_url + "/_fake/stats", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats

    def __exit__(self, *exc_info: object) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # Ctrl-C first (a clean shutdown); a parent that ignores SIGINT passes that on, hence the kill.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn_worker(kind: str, spec: dict[str, Any], cpus: set[int] | None) -> subprocess.Popen[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    if cpus is not None:
        # Pinned while it is still importing; nothing is measured before its warm-up is over.
        os.sched_setaffinity(proc.pid, cpus)
    return proc


def run_worker(
    kind: str, spec: dict[str, Any], cpus: set[int] | None, timeout: float = 600
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (pinned to the client CPU); its JSON result."""
    proc = _spawn_worker(kind, spec, cpus)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{kind} worker did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# 1. throughput (worker side)


async def _fetch_access_token(base_url: str) -> str:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.post(
            base_url + "/v0/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            headers={"X-Amperity-Tenant": TENANT},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def _api_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "amperity-tenant": TENANT,
        "api-version": CONTROL_PLANE_VERSION,
    }


READY = "timed window starts"

# A walker is one task's loop: it walks the list's pages (starting over at the end) until
# `deadline` (perf_counter) and returns the number of pages it read.
Walker = Callable[[float], Awaitable[int]]


async def _run_walkers(
    walk: Walker, tasks: int, warmup: float, seconds: float, server_pid: int | None
) -> dict[str, Any]:
    # Warm-up: connections, token, the first pages of every task, before the clock starts.
    await asyncio.gather(*(walk(time.perf_counter() + warmup) for _ in range(tasks)))
    print(READY, file=sys.stderr, flush=True)  # a profiler attaches now, after imports and warm-up
    server_before = _process_cpu_seconds(server_pid) if server_pid else None
    cpu_before = _own_cpu_seconds()
    started = time.perf_counter()
    deadline = started + seconds
    pages = sum(await asyncio.gather(*(walk(deadline) for _ in range(tasks))))
    elapsed = time.perf_counter() - started
    cpu = _own_cpu_seconds() - cpu_before
    server_after = _process_cpu_seconds(server_pid) if server_pid else None
    return {
        "pages": pages,
        "seconds": elapsed,
        "pages_per_s": pages / elapsed,
        "client_cpu": cpu / elapsed,
        "server_cpu": (server_after - server_before) / elapsed
        if server_before is not None and server_after is not None
        else None,
    }


async def _throughput_httpx(spec: dict[str, Any], transport: Any | None) -> dict[str, Any]:
    import httpx

    token = await _fetch_access_token(spec["base_url"])
    options: dict[str, Any] = {} if transport is None else {"transport": transport}
    async with httpx.AsyncClient(base_url=spec["base_url"], headers=_api_headers(token), **options) as http:

        async def walk(deadline: float) -> int:
            pages, next_token = 0, None
            while True:
                params: dict[str, Any] = {"limit": PAGE_SIZE}
                if next_token:
                    params["next_token"] = next_token
                response = await http.get(THROUGHPUT_PATH, params=params)
                response.raise_for_status()
                body = response.json()
                assert len(body["data"]) == PAGE_SIZE
                next_token = body.get("next_token") or None
                pages += 1
                if time.perf_counter() >= deadline:
                    return pages

        return await _run_walkers(
            walk, spec["tasks"], spec["warmup"], spec["seconds"], spec.get("server_pid")
        )


async def _throughput_aiohttp(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    token = await _fetch_access_token(spec["base_url"])
    url = spec["base_url"] + THROUGHPUT_PATH
    async with aiohttp.ClientSession(headers=_api_headers(token)) as session:

        async def walk(deadline: float) -> int:
            pages, next_token = 0, None
            while True:
                params: dict[str, Any] = {"limit": PAGE_SIZE}
                if next_token:
                    params["next_token"] = next_token
                async with session.get(url, params=params) as response:
                    response.raise_for_status()
                    body = json.loads(await response.read())
                assert len(body["data"]) == PAGE_SIZE
                next_token = body.get("next_token") or None
                pages += 1
                if time.perf_counter() >= deadline:
                    return pages

        return await _run_walkers(
            walk, spec["tasks"], spec["warmup"], spec["seconds"], spec.get("server_pid")
        )


def _unlimited() -> Any:
    from amperity_async.custom.ratelimit import TokenBucket

    # "Limits off": a bucket that never makes anyone wait, so its bookkeeping is still measured.
    return TokenBucket(1e9, capacity=1e9)


async def _throughput_client(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.api.segments import list_segment
    from amperity_async.custom.tokens import ClientCredentials
    from amperity_async.custom.client import AmperityClient

    client = AmperityClient(
        tenant=TENANT,
        auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        base_url=spec["base_url"],
        rate_limit=_unlimited(),
        profile_rate_limit=_unlimited(),
    )
    whole_pages = spec["variant"] == "pages"
    async with client:

        async def walk_items(deadline: float) -> int:
            pages = 0
            while True:
                async with client.paginate(list_segment, limit=PAGE_SIZE) as items:
                    count = 0
                    async for item in items:
                        count += 1
                        if count % PAGE_SIZE == 0:
                            assert item.id
                            pages += 1
                            if time.perf_counter() >= deadline:
                                return pages

        async def walk_pages(deadline: float) -> int:
            pages = 0
            while True:
                async with client.pages(list_segment, limit=PAGE_SIZE) as walker:
                    async for page in walker:
                        assert len(page.raw) == PAGE_SIZE
                        _ = walker.next_token
                        pages += 1
                        if time.perf_counter() >= deadline:
                            return pages

        result = await _run_walkers(
            walk_pages if whole_pages else walk_items,
            spec["tasks"],
            spec["warmup"],
            spec["seconds"],
            spec.get("server_pid"),
        )
        stats = client.stats
        result["client_requests"] = stats.requests
        result["client_retries"] = stats.retries
    return result


async def throughput_worker(spec: dict[str, Any]) -> dict[str, Any]:
    variant = spec["variant"]
    if variant == "httpx":
        result = await _throughput_httpx(spec, None)
    elif variant == "httpx-aiohttp":
        import httpx
        from httpx_aiohttp import AiohttpTransport

        # The same pool size as the client's default transport.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        result = await _throughput_httpx(spec, AiohttpTransport(limits=limits))
    elif variant == "aiohttp":
        result = await _throughput_aiohttp(spec)
    elif variant in FULL_STACK:
        result = await _throughput_client(spec)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


# 1. throughput (harness side)


@dataclass
class Cell:
    variant: str
    tasks: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pages_per_s(self) -> float:
        # The best round: other work on the machine only ever slows a round down.
        return max(float(r["pages_per_s"]) for r in self.runs)

    @property
    def mean_pages_per_s(self) -> float:
        pages = sum(int(r["pages"]) for r in self.runs)
        return pages / sum(float(r["seconds"]) for r in self.runs)

    def summary(self) -> dict[str, Any]:
        server = [r["server_cpu"] for r in self.runs if r.get("server_cpu") is not None]
        return {
            "variant": self.variant,
            "label": VARIANT_LABELS[self.variant],
            "tasks": self.tasks,
            "pages_per_s": self.pages_per_s,
            "mean_pages_per_s": self.mean_pages_per_s,
            "pages_per_s_by_round": [r["pages_per_s"] for r in self.runs],
            "pages": sum(r["pages"] for r in self.runs),
            "seconds": sum(r["seconds"] for r in self.runs),
            "client_cpu": statistics.fmean(r["client_cpu"] for r in self.runs),
            # CPU time of the client per page (best round): what the client costs, largely whatever
            # else the machine runs.
            "client_cpu_us_per_page": min(
                1e6 * r["client_cpu"] * r["seconds"] / r["pages"] for r in self.runs
            ),
            "server_cpu": statistics.fmean(server) if server else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in self.runs),
        }


def warm_server(base_url: str, cpus: set[int] | None) -> None:
    """Walk the whole list once so the tenant has built (and cached) every page before timing."""
    run_worker("warm", {"base_url": base_url}, cpus)


async def warm_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    token = await _fetch_access_token(spec["base_url"])
    pages, next_token = 0, None
    async with aiohttp.ClientSession(headers=_api_headers(token)) as session:
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if next_token:
                params["next_token"] = next_token
            async with session.get(spec["base_url"] + THROUGHPUT_PATH, params=params) as response:
                response.raise_for_status()
                body = json.loads(await response.read())
            pages += 1
            next_token = body.get("next_token")
            if not next_token:
                return {"pages": pages}


def throughput(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    flags = ["--rows", str(settings.throughput_rows), "--no-rate-limits"]
    cells = {(v, n): Cell(v, n) for n in settings.concurrency for v in VARIANTS}
    with TenantProcess(flags, server_cpus) as tenant:
        warm_server(tenant.base_url, client_cpus)
        for round_number in range(settings.rounds):
            for n in settings.concurrency:
                # Rotate the order each round: no variant always runs first (or right after another).
                shift = (round_number + settings.concurrency.index(n)) % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    spec = {
                        "variant": variant,
                        "tasks": n,
                        "seconds": settings.cell_seconds,
                        "warmup": min(0.5, settings.cell_seconds / 2),
                        "base_url": tenant.base_url,
                        "server_pid": tenant.pid,
                    }
                    cells[(variant, n)].runs.append(run_worker("throughput", spec, client_cpus))
        server_stats = tenant.stats()
    rows = [cells[(v, n)].summary() for n in settings.concurrency for v in VARIANTS]
    top = max(settings.concurrency)
    at_top = {row["variant"]: row["pages_per_s"] for row in rows if row["tasks"] == top}
    best_httpx = max(HTTPX_COMPATIBLE, key=lambda v: at_top[v])
    cpu_at_top = {row["variant"]: row["client_cpu_us_per_page"] for row in rows if row["tasks"] == top}
    ratios = (
        {f"{v}_vs_best_httpx_compatible": at_top[v] / at_top[best_httpx] for v in FULL_STACK}
        | {f"{v}_vs_httpx_aiohttp": at_top[v] / at_top["httpx-aiohttp"] for v in FULL_STACK}
        # The same comparison in client CPU per page (baseline / full stack): immune to other load.
        | {f"{v}_vs_httpx_aiohttp_by_cpu": cpu_at_top["httpx-aiohttp"] / cpu_at_top[v] for v in FULL_STACK}
    )
    return {
        "operation": THROUGHPUT_OPERATION,
        "rows": settings.throughput_rows,
        "page_size": PAGE_SIZE,
        "seconds_per_run": settings.cell_seconds,
        "rounds": settings.rounds,
        "cells": rows,
        "at_tasks": top,
        "best_httpx_compatible": best_httpx,
        "ratios": ratios,
        "server_requests": server_stats["requests"],
        "server_errors": {k: v for k, v in server_stats["by_status"].items() if k != "200"},
    }


# 1b. where the time goes (a sampling profile of the timed window, with py-spy)

# Each sample is charged to the innermost frame of a known layer (stdlib helpers count for the layer
# that called them), so the shares add up to 100% of the client's samples.
PROFILE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("benchmark loop", ("benchmarks/run.py", "run.py:")),
    ("response checks (custom/validation.py, msgspec)", ("custom/validation.py",)),
    ("model conversion (generated from_dict)", ("amperity_async/models/",)),
    ("generated request building (_get_kwargs)", ("amperity_async/api/",)),
    ("rate limiter (custom/ratelimit.py)", ("custom/ratelimit.py",)),
    ("AmperityTransport (custom/transport.py)", ("custom/transport.py",)),
    ("auth flow (custom/auth.py)", ("custom/auth.py",)),
    ("pagination and prefetch (custom/pagination.py)", ("custom/pagination.py",)),
    ("facade (custom/client.py)", ("custom/client.py",)),
    ("httpx-aiohttp adapter", ("httpx_aiohttp/",)),
    ("httpx (request/response objects, URLs, headers, auth driver)", ("httpx/",)),
    ("aiohttp client (connections, HTTP parsing)", ("aiohttp/", "multidict/", "yarl/", "propcache/")),
    ("anyio (task group, events)", ("anyio/",)),
    ("json (stdlib)", ("json/",)),
    ("event loop and sockets (asyncio)", ("asyncio/", "selectors.py", "socket.py")),
)
PROFILED_FUNCTIONS = (
    "AmperityClient._send",
    "BaseClient.build_request",
    "AsyncClient.send",
    "AmperityAuth.async_auth_flow",
    "AmperityTransport.handle_async_request",
    "AiohttpTransport.handle_async_request",
    "Response.aread",
    "ResponseValidator.decode",
    "Page.item",
    "TokenBucket.acquire",
)


def _frame_file(frame: str) -> str:
    # py-spy's raw format: "function (path/file.py:line)".
    head, _, tail = frame.rpartition(" (")
    return tail.rsplit(":", 1)[0] if head else frame


def profile_breakdown(collapsed: str) -> dict[str, Any]:
    """Shares of the samples by layer (innermost known frame) and of chosen functions (inclusive)."""
    total = 0
    layers: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
        for name in {frame.rpartition(" (")[0] for frame in frames}:
            if name in PROFILED_FUNCTIONS:
                inclusive[name] = inclusive.get(name, 0) + count
        charged = "other"
        for frame in reversed(frames):
            path = _frame_file(frame)
            found = next((label for label, marks in PROFILE_LAYERS if any(m in path for m in marks)), None)
            if found is not None:
                charged = found
                break
        layers[charged] = layers.get(charged, 0) + count
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "layers": {k: share(v) for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
        "functions_inclusive": {k: share(inclusive.get(k, 0)) for k in PROFILED_FUNCTIONS},
        "top_leaves": {k: share(v) for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]},
    }


def profile_variant(
    variant: str, tasks: int, seconds: float, base_url: str, server_pid: int, cpus: set[int] | None, out: Path
) -> dict[str, Any]:
    """Run one throughput cell and sample its timed window with py-spy (attached after the warm-up)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    spec = {
        "variant": variant,
        "tasks": tasks,
        "seconds": seconds,
        "warmup": 0.5,
        "base_url": base_url,
        "server_pid": server_pid,
    }
    worker = _spawn_worker("throughput", spec, cpus)
    assert worker.stderr is not None and worker.stdout is not None
    for line in worker.stderr:
        if line.strip() == READY:
            break
    sampler = subprocess.run(
        [
            py_spy,
            "record",
            "--pid",
            str(worker.pid),
            "--duration",
            str(max(1, int(seconds) - 1)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    stdout, stderr = worker.communicate(timeout=600)
    if worker.returncode != 0:
        raise RuntimeError(f"profiled {variant} worker failed:\n{stderr[-4000:]}")
    if sampler.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {(sampler.stderr or sampler.stdout).strip()[-500:]}"}
    result = profile_breakdown(out.read_text())
    result["throughput"] = json.loads(stdout.strip().splitlines()[-1])
    result["collapsed_stacks"] = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    return result


def profile(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None, out_dir: Path
) -> dict[str, Any]:
    tasks = max(settings.concurrency)
    seconds = max(3.0, settings.cell_seconds * 2)
    profiles: dict[str, Any] = {"tasks": tasks, "seconds": seconds}
    out_dir.mkdir(parents=True, exist_ok=True)
    with TenantProcess(["--rows", str(settings.throughput_rows), "--no-rate-limits"], server_cpus) as tenant:
        warm_server(tenant.base_url, client_cpus)
        for variant in ("httpx-aiohttp", "paginate", "pages"):
            profiles[variant] = profile_variant(
                variant,
                tasks,
                seconds,
                tenant.base_url,
                tenant.pid,
                client_cpus,
                out_dir / f"profile-{variant}.txt",
            )
    return profiles


# 2. rate fidelity


async def rate_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.api.segments import list_segment
    from amperity_async.custom.tokens import ClientCredentials
    from amperity_async.custom.client import AmperityClient
    from amperity_async.custom.errors import RateLimitError
    from amperity_async.custom.connections import default_inner_transport

    ok = refused = 0
    finished: list[float] = []
    from amperity_async.custom.ratelimit import TokenBucket

    recorder = RecordingTransport(default_inner_transport())
    # The client's defaults (the 10/s control-plane bucket, retries on) unless a budget is given.
    # The recorder only notes times.
    budget: dict[str, Any] = {} if spec.get("budget") is None else {"rate_limit": TokenBucket(spec["budget"])}
    async with AmperityClient(
        tenant=TENANT,
        auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        base_url=spec["base_url"],
        transport=recorder,
        **budget,
    ) as client:
        await client.call(list_segment, limit=PAGE_SIZE)  # token and connection before the clock starts
        warmup_requests = client.stats.requests
        started = time.perf_counter()

        async def task() -> None:
            nonlocal ok, refused
            while True:
                try:
                    await client.call(list_segment, limit=PAGE_SIZE)
                    ok += 1
                    finished.append(time.perf_counter())
                except RateLimitError:
                    refused += 1

        async def run_all() -> None:
            await asyncio.gather(*(task() for _ in range(spec["tasks"])))

        try:
            await asyncio.wait_for(run_all(), timeout=spec["seconds"])
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - started
        sent = [t for t in recorder.api_requests if t >= started]
        limit = int(spec["limit"])
        # The tightest span of limit+1 consecutive sends: under 1 s, a strict sliding window refuses one.
        spans = [(sent[i + limit] - sent[i], sent[i] - started) for i in range(len(sent) - limit)]
        tightest = min(spans) if spans else None
        return {
            "tasks": spec["tasks"],
            "refusals_at_s": [
                (round(t - started, 3), status) for t, status in recorder.refusals if t >= started
            ],
            "tightest_span_of_limit_plus_one_sends_s": None if tightest is None else round(tightest[0], 4),
            "tightest_span_at_s": None if tightest is None else round(tightest[1], 3),
            "spans_under_1s": sum(1 for span, _ in spans if span < 1.0),
            # What each 429 cost: the rate sent in the 10 s after it (the bucket slows down after a 429).
            "rate_in_10s_after_each_429": [
                sum(1 for t in sent if when < t <= when + 10.0) / 10.0
                for when, status in recorder.refusals
                if status == 429 and when >= started and when + 10.0 <= started + elapsed
            ],
            "seconds": elapsed,
            "requests_ok": ok,
            "achieved_rate": ok / elapsed,
            "rate_errors_raised": refused,
            "client_429s": client.stats.rate_limited,
            "client_requests": client.stats.requests - warmup_requests,
            "first_to_last_rate": (len(finished) - 1) / (finished[-1] - finished[0])
            if len(finished) > 1
            else None,
        }


def _rate_run(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None, budget: float | None
) -> dict[str, Any]:
    limit = 10
    with TenantProcess(
        ["--rows", "1000", "--rate-limits", "--control-plane-rate", str(limit)], server_cpus
    ) as tenant:
        before = tenant.stats()
        spec = {
            "base_url": tenant.base_url,
            "tasks": settings.rate_tasks,
            "seconds": settings.rate_seconds,
            "limit": limit,
            "budget": budget,
        }
        result = run_worker("rate", spec, client_cpus)
        after = tenant.stats()
    result.update(
        budget=budget,
        limit=float(limit),
        fidelity=result["achieved_rate"] / limit,
        server_429s=after["rate_limited"] - before["rate_limited"],
        server_requests=after["requests"] - before["requests"],
    )
    return result


def rate_fidelity(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    """The client's default bucket; then, for comparison, a bucket 1% under the limit (set by the user)."""
    result = _rate_run(settings, server_cpus, client_cpus, None)
    result["with_margin"] = _rate_run(settings, server_cpus, client_cpus, RATE_WITH_MARGIN)
    return result


# 3. token refresh under load


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps the client's inner transport; notes when each request was sent and what failed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.token_requests: list[float] = []
        self.api_requests: list[float] = []
        self.refusals: list[tuple[float, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.perf_counter()
        (self.token_requests if request.url.path.endswith("/oauth2/token") else self.api_requests).append(
            sent
        )
        response = await self._inner.handle_async_request(request)
        if response.status_code >= 400:
            self.refusals.append((sent, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def group_renewals(times: Sequence[float], gap: float) -> list[int]:
    """Sizes of the bursts of token requests: requests closer than ``gap`` belong to one renewal."""
    sizes: list[int] = []
    last = -math.inf
    for t in sorted(times):
        if t - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


async def token_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.api.segments import list_segment
    from amperity_async.custom.tokens import ClientCredentials
    from amperity_async.custom.client import AmperityClient
    from amperity_async.custom.connections import default_inner_transport

    recorder = RecordingTransport(default_inner_transport())
    client = AmperityClient(
        tenant=TENANT,
        auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        base_url=spec["base_url"],
        rate_limit=_unlimited(),
        token_leeway=spec["leeway"],
        transport=recorder,
    )
    pages = 0
    async with client:
        started = time.perf_counter()
        deadline = started + spec["seconds"]

        async def task() -> None:
            nonlocal pages
            while True:
                async with client.pages(list_segment, limit=PAGE_SIZE) as walker:
                    async for _ in walker:
                        pages += 1
                        if time.perf_counter() >= deadline:
                            return

        await asyncio.gather(*(task() for _ in range(spec["tasks"])))
        elapsed = time.perf_counter() - started
        times = recorder.token_requests
        period = spec["lifetime"] - spec["leeway"]
        bursts = group_renewals(times, gap=period / 2)
        return {
            "tasks": spec["tasks"],
            "seconds": elapsed,
            "pages_per_s": pages / elapsed,
            "token_requests_sent": len(times),
            "fetch_count": client.refresher.fetch_count,
            "bursts": bursts,
            "renewal_times": [round(t - times[0], 3) for t in times] if times else [],
            "expected_renewals": int((times[-1] - times[0] + period / 2) // period) if times else 0,
        }


def token_refresh(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    flags = ["--rows", "2000", "--no-rate-limits", "--token-lifetime", str(settings.token_lifetime)]
    with TenantProcess(flags, server_cpus) as tenant:
        before = tenant.stats()
        spec = {
            "base_url": tenant.base_url,
            "tasks": settings.token_tasks,
            "seconds": settings.token_seconds,
            "lifetime": settings.token_lifetime,
            "leeway": settings.token_leeway,
        }
        result = run_worker("token", spec, client_cpus)
        after = tenant.stats()
    token_requests = after["token_requests"] - before["token_requests"]
    renewals = len(result["bursts"]) - 1  # the first burst is the initial token, not a renewal
    result.update(
        token_lifetime=settings.token_lifetime,
        token_leeway=settings.token_leeway,
        server_token_requests=token_requests,
        server_tokens_issued=after["tokens_issued"] - before["tokens_issued"],
        server_401s=after["unauthorized"] - before["unauthorized"],
        renewals=renewals,
        # Everything after the initial token, over the renewals the timeline shows.
        token_requests_per_renewal=(token_requests - result["bursts"][0]) / renewals
        if renewals > 0
        else None,
        largest_burst=max(result["bursts"]),
    )
    return result


# 4. extraction under faults


async def extract_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.custom.tokens import ClientCredentials
    from amperity_async.custom.cli import extract_all
    from amperity_async.custom.client import AmperityClient

    async with AmperityClient(
        tenant=TENANT, auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET), base_url=spec["base_url"]
    ) as client:
        started = time.perf_counter()
        results = await extract_all(client, Path(spec["out"]))
        elapsed = time.perf_counter() - started
        stats = client.stats
        return {
            "seconds": elapsed,
            "files": len(results),
            "rows": sum(r.rows for r in results),
            "pages": sum(r.pages for r in results),
            "requests": stats.requests,
            "retries": stats.retries,
            "client_429s": stats.rate_limited,
            "server_errors_seen": stats.server_errors,
            "connection_errors_seen": stats.errors,
            "token_requests": client.refresher.fetch_count,
            "peak_rss_mb": _peak_rss_mb(),
        }


def compare_outputs(clean: Path, faulty: Path) -> dict[str, Any]:
    """Same files (checkpoints aside), same lines once sorted, and whether the bytes are the same as is."""

    def files(folder: Path) -> dict[str, Path]:
        return {p.name: p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".checkpoint")}

    a, b = files(clean), files(faulty)
    differing = []
    byte_identical = 0
    for name in sorted(set(a) & set(b)):
        data_a, data_b = a[name].read_bytes(), b[name].read_bytes()
        if data_a == data_b:
            byte_identical += 1
        elif sorted(data_a.splitlines()) != sorted(data_b.splitlines()):
            differing.append(name)
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    return {
        "files": len(a),
        "lines": sum(len(p.read_bytes().splitlines()) for p in a.values()),
        "missing_files": missing,
        "extra_files": extra,
        "differing_files": differing,
        "byte_identical_files": byte_identical,
        "identical": not (missing or extra or differing),
    }


def extraction(
    settings: Settings, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    common = [
        "--seed",
        "7",
        "--rows",
        str(settings.extract_rows),
        "--indexes",
        str(settings.extract_indexes),
        "--profiles-per-index",
        str(settings.extract_profiles),
        "--rate-limits",
    ]
    scratch = Path(tempfile.mkdtemp(prefix="amperity-bench-"))
    try:
        with TenantProcess(common, server_cpus) as tenant:
            clean = run_worker(
                "extract", {"base_url": tenant.base_url, "out": str(scratch / "clean")}, client_cpus
            )
            clean_server = tenant.stats()
        # The one revocation lands about a third of the way through.
        revoke_after = max(1, clean_server["requests"] // 3)
        faults = ["--error-rate", "0.1", "--drop-rate", "0.02", "--revoke-after-requests", str(revoke_after)]
        with TenantProcess(common + faults, server_cpus) as tenant:
            faulty = run_worker(
                "extract", {"base_url": tenant.base_url, "out": str(scratch / "faulty")}, client_cpus
            )
            faulty_server = tenant.stats()
        comparison = compare_outputs(scratch / "clean", scratch / "faulty")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "tenant": {
            "rows": settings.extract_rows,
            "indexes": settings.extract_indexes,
            "profiles_per_index": settings.extract_profiles,
            "rate_limits": True,
            "seed": 7,
        },
        "faults": {"error_rate": 0.1, "drop_rate": 0.02, "revoke_after_requests": revoke_after},
        "clean": clean,
        "faulty": faulty,
        "server_faults": {
            k: faulty_server[k]
            for k in ("injected_errors", "dropped", "revocations", "unauthorized", "rate_limited", "requests")
        },
        "server_clean": {k: clean_server[k] for k in ("requests", "rate_limited", "unauthorized")},
        # Requests the tenant answered that the client's transport never sent: aiohttp re-sends an
        # idempotent request once by itself when a reused connection drops.
        "unseen_resends": faulty_server["requests"] - faulty["requests"],
        "comparison": comparison,
        "identical": comparison["identical"],
        "wall_time_ratio": faulty["seconds"] / clean["seconds"],
    }


# report


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "throughput" in results:
        tp = results["throughput"]
        top = tp["at_tasks"]
        full = next(c for c in tp["cells"] if c["variant"] == "paginate" and c["tasks"] == top)
        ratio = tp["ratios"]["paginate_vs_httpx_aiohttp"]
        rows += [
            {
                "target": f"paginate >= {TARGET_RATIO_VS_HTTPX_AIOHTTP:.0%} of raw httpx over httpx-aiohttp at {top} tasks",
                "measured": f"{ratio:.2f}",
                "met": ratio >= TARGET_RATIO_VS_HTTPX_AIOHTTP,
            },
            {
                "target": f"paginate >= {TARGET_PAGES_PER_SECOND:,.0f} pages/s at {top} tasks",
                "measured": f"{full['pages_per_s']:,.0f}",
                "met": full["pages_per_s"] >= TARGET_PAGES_PER_SECOND,
            },
        ]
    if "rate_fidelity" in results:
        rate = results["rate_fidelity"]
        rows.append(
            {
                "target": f"rate fidelity >= {TARGET_RATE_FIDELITY} with zero 429s",
                "measured": f"{rate['fidelity']:.3f}, {rate['server_429s']} x 429",
                "met": rate["fidelity"] >= TARGET_RATE_FIDELITY and rate["server_429s"] == 0,
            }
        )
    if "token_refresh" in results:
        tok = results["token_refresh"]
        per = tok["token_requests_per_renewal"]
        rows.append(
            {
                "target": "exactly 1 token request per expiry",
                "measured": "n/a" if per is None else f"{per:.2f} ({tok['renewals']} renewals)",
                "met": per == TARGET_TOKEN_REQUESTS_PER_RENEWAL and tok["largest_burst"] == 1,
            }
        )
    if "extraction" in results:
        ex = results["extraction"]
        rows.append(
            {
                "target": "faults change nothing in the output",
                "measured": ("identical" if ex["identical"] else "DIFFERENT")
                + f", {ex['wall_time_ratio']:.2f}x time",
                "met": ex["identical"],
            }
        )
    return rows


def _throughput_markdown(tp: dict[str, Any]) -> list[str]:
    lines = [
        (
            f"**Throughput** ({tp['operation']}, {tp['page_size']}-item pages, limits off, "
            f"{tp['rounds']} x {tp['seconds_per_run']:g} s per cell, interleaved, best round; "
            "CPU = busy fraction of one core)"
        ),
        "",
        "| variant | tasks | pages/s | client CPU | client CPU per page | tenant CPU | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in tp["cells"]:
        server = "-" if c["server_cpu"] is None else f"{c['server_cpu']:.0%}"
        lines.append(
            f"| {c['label']} | {c['tasks']} | {c['pages_per_s']:,.0f} | {c['client_cpu']:.0%} "
            f"| {c['client_cpu_us_per_page']:,.0f} µs | {server} "
            f"| {c['peak_rss_mb']:.0f} MB |"
        )
    r = tp["ratios"]
    best = VARIANT_LABELS[tp["best_httpx_compatible"]]
    lines += [
        "",
        (
            f"At {tp['at_tasks']} tasks, full stack / raw httpx over httpx-aiohttp: paginate "
            f"**{r['paginate_vs_httpx_aiohttp']:.2f}**, pages {r['pages_vs_httpx_aiohttp']:.2f}; "
            f"full stack / best httpx-compatible baseline ({best}): paginate "
            f"**{r['paginate_vs_best_httpx_compatible']:.2f}**, pages {r['pages_vs_best_httpx_compatible']:.2f}. "
            f"By client CPU per page (raw / full stack): paginate {r['paginate_vs_httpx_aiohttp_by_cpu']:.2f}, "
            f"pages {r['pages_vs_httpx_aiohttp_by_cpu']:.2f}."
        ),
        "",
    ]
    return lines


def _profile_markdown(prof: dict[str, Any]) -> list[str]:
    variants = [v for v in ("httpx-aiohttp", "paginate", "pages") if "layers" in prof.get(v, {})]
    if not variants:
        return [f"(no profile: {prof.get('paginate', {}).get('error', 'py-spy unavailable')})", ""]
    per_page = {
        v: 1e6 * prof[v]["throughput"]["client_cpu"] / prof[v]["throughput"]["pages_per_s"] for v in variants
    }
    lines = [
        (
            f"**Where the client's CPU goes** (py-spy, {prof['tasks']} tasks, timed window only; µs of client CPU "
            "per page, charged to the innermost frame of each layer)"
        ),
        "",
        "| layer | " + " | ".join(VARIANT_LABELS[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    names: list[str] = []
    for v in variants:
        names += [n for n in prof[v]["layers"] if n not in names]
    for name in names:
        cells = [f"{prof[v]['layers'].get(name, 0.0) * per_page[v]:,.0f}" for v in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{per_page[v]:,.0f}**" for v in variants) + " |")
    lines += [
        "",
        "| function (inclusive) | " + " | ".join(VARIANT_LABELS[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for fn in PROFILED_FUNCTIONS:
        cells = [f"{prof[v]['functions_inclusive'].get(fn, 0.0) * per_page[v]:,.0f}" for v in variants]
        lines.append(f"| `{fn}` | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _refusals(rate: dict[str, Any]) -> str:
    """When the 429s came, how tight the client's own spacing got, and what each 429 cost."""
    times = [f"{t:.1f}" for t, status in rate["refusals_at_s"] if status == 429]
    parts = [f"at {', '.join(times)} s"] if times else []
    tightest = rate["tightest_span_of_limit_plus_one_sends_s"]
    if tightest is not None:
        parts.append(f"tightest 11 consecutive sends by the client: {tightest} s")
    if rate["rate_in_10s_after_each_429"]:
        after = ", ".join(f"{r:.1f}/s" for r in rate["rate_in_10s_after_each_429"])
        parts.append(f"sent in the 10 s after each 429: {after}")
    return f" ({'; '.join(parts)})" if parts else ""


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        (
            f"Measured {results['finished']} ({results['mode']} mode: `{results['command']}`) on {m['cpus']} CPUs, "
            f"Python {m['python']}; fake tenant pinned to CPU {m['server_cpus']}, clients to CPU {m['client_cpus']}; "
            f"load average (1 min) at the start and end of each section: "
            + ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in m["load_by_section"].items())
            + " (other work on the machine slows the throughput cells; CPU per page is unaffected)."
        ),
        "",
    ]
    if "throughput" in results:
        lines += _throughput_markdown(results["throughput"])
    if "profile" in results:
        lines += _profile_markdown(results["profile"])
    lines += ["| benchmark | result |", "|---|---|"]
    if "rate_fidelity" in results:
        rate = results["rate_fidelity"]
        lines.append(
            f"| rate fidelity: {rate['tasks']} tasks, the client's default 10/s bucket vs the tenant's 10/s limit, "
            f"{rate['seconds']:.0f} s | {rate['achieved_rate']:.2f}/s = **{rate['fidelity']:.3f}** of the limit; "
            f"{rate['server_429s']} x 429{_refusals(rate)} |"
        )
        margin = rate["with_margin"]
        lines.append(
            f"| the same with `rate_limit=TokenBucket({margin['budget']:g})` (a 1% margin, for comparison) | "
            f"{margin['achieved_rate']:.2f}/s = {margin['fidelity']:.3f} of the limit; {margin['server_429s']} x 429{_refusals(margin)} |"
        )
    if "token_refresh" in results:
        tok = results["token_refresh"]
        per = "-" if tok["token_requests_per_renewal"] is None else f"{tok['token_requests_per_renewal']:.2f}"
        lines.append(
            f"| token refresh: {tok['tasks']} tasks, {tok['token_lifetime']:g} s tokens (leeway "
            f"{tok['token_leeway']:g} s), {tok['seconds']:.0f} s | {tok['renewals']} renewals, "
            f"{tok['server_token_requests']} token requests (initial one included): **{per}** per renewal, "
            f"largest burst {tok['largest_burst']}; {tok['server_401s']} x 401; {tok['pages_per_s']:,.0f} pages/s |"
        )
    if "extraction" in results:
        ex = results["extraction"]
        cmp_ = ex["comparison"]
        sf = ex["server_faults"]
        lines.append(
            f"| extract-all, fault-free vs 10% 5xx + 2% drops + 1 token revocation | "
            f"{cmp_['files']} files, {cmp_['lines']:,} lines: **{'identical' if ex['identical'] else 'DIFFERENT'}** "
            f"({cmp_['byte_identical_files']} byte for byte); {ex['clean']['seconds']:.1f} s vs "
            f"{ex['faulty']['seconds']:.1f} s = **{ex['wall_time_ratio']:.2f}x** ({sf['injected_errors']} x 5xx, "
            f"{sf['dropped']} drops, {sf['revocations']} revocation, {ex['faulty']['retries']} retries by the "
            f"client, {ex['unseen_resends']} re-sent by aiohttp unseen by the client) |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


WORKERS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "throughput": throughput_worker,
    "warm": warm_worker,
    "rate": rate_worker,
    "token": token_worker,
    "extract": extract_worker,
}


SECTIONS: dict[str, Callable[[Settings, set[int] | None, set[int] | None], dict[str, Any]]] = {
    "throughput": throughput,
    "rate_fidelity": rate_fidelity,
    "token_refresh": token_refresh,
    "extraction": extraction,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter runs (1 s per cell, 10 s rate fidelity)")
    mode.add_argument(
        "--smoke", action="store_true", help="the shortest runs on a tiny tenant (keeps it working)"
    )
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the full stack and the raw baseline with py-spy (where the time goes)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for latest.json and latest.md")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, spec = args.worker
        print(json.dumps(asyncio.run(WORKERS[kind](json.loads(spec)))))
        return 0

    settings = Settings.for_mode("smoke" if args.smoke else "quick" if args.quick else "full")
    server_cpus, client_cpus = _cpu_sets()
    command = "python benchmarks/run.py" + ("" if settings.mode == "full" else f" --{settings.mode}")
    command += " --profile" if args.profile else ""
    command += "".join(f" --only {name}" for name in args.only or ())
    results: dict[str, Any] = {
        "mode": settings.mode,
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "load_before": os.getloadavg()[0],
        },
    }
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        results["machine"].setdefault("load_by_section", {})[name] = [os.getloadavg()[0]]
        began = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = section(settings, server_cpus, client_cpus)
        print(f"{name} done in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        results["machine"]["load_by_section"][name].append(os.getloadavg()[0])
        if name == "throughput" and args.profile:
            print("profile ...", file=sys.stderr, flush=True)
            results["profile"] = profile(settings, server_cpus, client_cpus, args.out)
    results["machine"]["load_after"] = os.getloadavg()[0]
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = targets(results)
    table = markdown(results)
    stem = "latest" if not args.only else "only-" + "-".join(sorted(args.only))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
