"""The sections that need a tenant with behaviour, not just pages: the fake tenant in its own process.

- Rate fidelity: 50 tasks on the client's default 10/s control-plane bucket against the tenant's
  strict 10/s window: achieved rate / 10 and the 429s the tenant answered; then the same with a
  bucket 1% under the limit, for comparison.
- Token refresh under load: 200 tasks across several expiries of short-lived tokens: token requests
  per renewal (the client's token requests are timed to group them by renewal).
- Extraction under faults: ``amperity-async extract-all`` against a fault-free tenant, then against
  one with 10% 5xx, 2% dropped connections and one token revocation (same seed, same data): the same
  files with the same lines, and the wall-time ratio.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from .cli import cli_command
from .processes import BenchmarkError, CpuPlan, pin, run_one_shot, stop_process, tail
from .settings import CLIENT_ID, CLIENT_SECRET, PAGE_SIZE, ROOT, SEED, TENANT, Settings

# A second rate-fidelity run with rate_limit=TokenBucket(9.9): what a 1% margin under the limit gives.
RATE_WITH_MARGIN = 9.9
CONTROL_PLANE_LIMIT = 10


class TenantProcess:
    """``amperity-async fake-tenant`` as a child process pinned to the server CPU."""

    def __init__(self, flags: Sequence[str], cpus: frozenset[int] | None, scratch: Path) -> None:
        self.flags = list(flags)
        self.cpus = cpus
        self.output = scratch / f"tenant-{time.monotonic_ns()}.log"
        self.base_url = ""
        self.root_url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "amperity_async", "fake-tenant", "--port", "0", *self.flags]
        with self.output.open("wb") as output:
            self._proc = proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT
            )
        pin(proc.pid, self.cpus)
        deadline = time.monotonic() + 60
        while not self.base_url:
            for line in tail(self.output, 100_000).splitlines():
                if line.strip().startswith("AMPERITY_BASE_URL="):
                    self.base_url = line.strip().split("=", 1)[1]
                    self.root_url = self.base_url.rsplit("/api", 1)[0]
            if self.base_url:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise BenchmarkError(
                    f"the fake tenant did not start ({' '.join(self.flags)}):\n{tail(self.output)}"
                )
            time.sleep(0.05)  # it prints where it listens once it does
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchmarkError("the fake tenant is not running")
        return self._proc.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root_url + "/_fake/stats", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            # Ctrl-C: a clean shutdown.
            stop_process(self._proc, first=signal.SIGINT, grace=3)
            self._proc = None


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps the client's inner transport; notes when each request was sent and what failed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.token_requests: list[float] = []
        self.api_requests: list[float] = []
        self.refusals: list[tuple[float, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.perf_counter()
        is_token = request.url.path.endswith("/oauth2/token")
        (self.token_requests if is_token else self.api_requests).append(sent)
        response = await self._inner.handle_async_request(request)
        if response.status_code >= 400:
            self.refusals.append((sent, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# rate fidelity


async def rate_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from amperity_async import (
        AmperityClient,
        ClientCredentials,
        RateLimitError,
        TokenBucket,
        default_inner_transport,
    )
    from amperity_async.api.segments import list_segment

    ok = refused = 0
    finished: list[float] = []
    recorder = RecordingTransport(default_inner_transport())
    # The client's defaults (the 10/s control-plane bucket, retries on) unless a budget is given.
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
        }


def _against_tenant(
    flags: Sequence[str], worker: str, spec: dict[str, Any], cpus: CpuPlan, scratch: Path
) -> tuple[dict[str, Any], dict[str, int]]:
    """A one-shot worker against a fresh fake tenant; its result, and what the tenant counted meanwhile."""
    with TenantProcess(flags, cpus.server, scratch) as tenant:
        before = tenant.stats()
        result = run_one_shot(worker, spec | {"base_url": tenant.base_url}, cpus.client, scratch)
        after = tenant.stats()
    counted = {k: v - before[k] for k, v in after.items() if isinstance(v, int) and k in before}
    return result, counted


def _rate_run(settings: Settings, cpus: CpuPlan, scratch: Path, budget: float | None) -> dict[str, Any]:
    flags = ["--rows", "1000", "--rate-limits", "--control-plane-rate", str(CONTROL_PLANE_LIMIT)]
    spec = {
        "tasks": settings.rate_tasks,
        "seconds": settings.rate_seconds,
        "limit": CONTROL_PLANE_LIMIT,
        "budget": budget,
    }
    result, counted = _against_tenant(flags, "rate", spec, cpus, scratch)
    return result | {
        "budget": budget,
        "limit": float(CONTROL_PLANE_LIMIT),
        "fidelity": result["achieved_rate"] / CONTROL_PLANE_LIMIT,
        "server_429s": counted["rate_limited"],
        "server_requests": counted["requests"],
    }


def rate_fidelity(settings: Settings, cpus: CpuPlan, scratch: Path) -> dict[str, Any]:
    """The client's default bucket; then, for comparison, a bucket 1% under the limit (set by the user)."""
    result = _rate_run(settings, cpus, scratch, None)
    result["with_margin"] = _rate_run(settings, cpus, scratch, RATE_WITH_MARGIN)
    return result


# token refresh under load


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
    import asyncio

    from amperity_async import AmperityClient, ClientCredentials, TokenBucket, default_inner_transport
    from amperity_async.api.segments import list_segment

    recorder = RecordingTransport(default_inner_transport())
    client = AmperityClient(
        tenant=TENANT,
        auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        base_url=spec["base_url"],
        rate_limit=TokenBucket(1e9, capacity=1e9),
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
        return {
            "tasks": spec["tasks"],
            "seconds": elapsed,
            "pages_per_s": pages / elapsed,
            "token_requests_sent": len(times),
            "fetch_count": client.refresher.fetch_count,
            "bursts": group_renewals(times, gap=period / 2),
            "renewal_times": [round(t - times[0], 3) for t in times] if times else [],
        }


def token_refresh(settings: Settings, cpus: CpuPlan, scratch: Path) -> dict[str, Any]:
    flags = ["--rows", "2000", "--no-rate-limits", "--token-lifetime", str(settings.token_lifetime)]
    spec = {
        "tasks": settings.token_tasks,
        "seconds": settings.token_seconds,
        "lifetime": settings.token_lifetime,
        "leeway": settings.token_leeway,
    }
    result, counted = _against_tenant(flags, "token", spec, cpus, scratch)
    token_requests = counted["token_requests"]
    renewals = len(result["bursts"]) - 1  # the first burst is the initial token, not a renewal
    return result | {
        "token_lifetime": settings.token_lifetime,
        "token_leeway": settings.token_leeway,
        "server_token_requests": token_requests,
        "server_tokens_issued": counted["tokens_issued"],
        "server_401s": counted["unauthorized"],
        "renewals": renewals,
        # Everything after the initial token, over the renewals the timeline shows.
        "token_requests_per_renewal": (token_requests - result["bursts"][0]) / renewals
        if renewals > 0
        else None,
        "largest_burst": max(result["bursts"]),
    }


# extraction under faults


def extract_all(base_url: str, out: Path, cpus: frozenset[int] | None, scratch: Path) -> dict[str, Any]:
    """``amperity-async extract-all`` into ``out``, as a user runs it; its wall time."""
    command = [
        *cli_command(),
        "extract-all",
        "--out",
        str(out),
        "--limit",
        str(PAGE_SIZE),
        "--tenant",
        TENANT,
        "--base-url",
        base_url,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPERITY_")}
    log = scratch / f"extract-all-{time.monotonic_ns()}.log"
    started = time.perf_counter()
    with log.open("wb") as output:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    pin(proc.pid, cpus)
    try:
        returncode = proc.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise BenchmarkError(f"`{' '.join(command)}` did not finish within 1800 s:\n{tail(log)}") from None
    if returncode != 0:
        raise BenchmarkError(f"`{' '.join(command)}` failed (exit {returncode}):\n{tail(log)}")
    return {"seconds": time.perf_counter() - started}


def compare_outputs(clean: Path, faulty: Path) -> dict[str, Any]:
    """Same JSON Lines files, same lines once sorted, and whether the bytes are the same as is."""

    def files(folder: Path) -> dict[str, Path]:
        return {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix == ".jsonl"}

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


def extraction_under_faults(settings: Settings, cpus: CpuPlan, scratch: Path) -> dict[str, Any]:
    common = [
        "--seed",
        str(SEED),
        "--rows",
        str(settings.faults_rows),
        "--indexes",
        str(settings.faults_indexes),
        "--profiles-per-index",
        str(settings.faults_profiles),
        "--rate-limits",
    ]
    out = scratch / "extract-all"
    try:
        with TenantProcess(common, cpus.server, scratch) as tenant:
            clean = extract_all(tenant.base_url, out / "clean", cpus.client, scratch)
            clean_server = tenant.stats()
        # The one revocation lands about a third of the way through.
        revoke_after = max(1, clean_server["requests"] // 3)
        faults = ["--error-rate", "0.1", "--drop-rate", "0.02", "--revoke-after-requests", str(revoke_after)]
        with TenantProcess(common + faults, cpus.server, scratch) as tenant:
            faulty = extract_all(tenant.base_url, out / "faulty", cpus.client, scratch)
            faulty_server = tenant.stats()
        comparison = compare_outputs(out / "clean", out / "faulty")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "tenant": {
            "rows": settings.faults_rows,
            "indexes": settings.faults_indexes,
            "profiles_per_index": settings.faults_profiles,
            "rate_limits": True,
            "seed": SEED,
        },
        "faults": {"error_rate": 0.1, "drop_rate": 0.02, "revoke_after_requests": revoke_after},
        "clean": clean,
        "faulty": faulty,
        "server_faults": {
            k: faulty_server[k]
            for k in ("injected_errors", "dropped", "revocations", "unauthorized", "rate_limited", "requests")
        },
        "server_clean": {k: clean_server[k] for k in ("requests", "rate_limited", "unauthorized")},
        "comparison": comparison,
        "identical": comparison["identical"],
        "wall_time_ratio": faulty["seconds"] / clean["seconds"],
    }
