"""``make bench``, Real-time API part: what the client adds to a lookup or an event, against raw aiohttp
making the same request in the same run.

1. Closed loop, lookups (GET /prof/lookup/{collection}/keychain?email=...) at 1, 100 and 1,000
   concurrent tasks, and events (POST /prof/events/{stream}) at 100: requests per second and the
   client process's CPU microseconds per request. The client is ``AmperityClient.call`` with its
   client-side limits off (tokens, headers, the rate limiter's bookkeeping, retries, response
   checks and the generated model all included); raw aiohttp sends the same request with a fixed
   token and parses the JSON, and so does raw httpx over httpx-aiohttp (the transport the client
   itself uses): what httpx costs before the client adds anything. All use a pool of 100 connections.
2. Open loop at a fixed rate (500 lookups/s, below what either saturates at): request ``i`` starts
   at ``t0 + i / rate`` whether or not earlier ones are done, and its latency is measured from that
   moment, so a stall is counted against every request it delays. Reported: p50 and p99 of each,
   and the client's minus raw aiohttp's.

Each measurement runs in a fresh process pinned to the client CPU; the fake tenant runs in its own
process pinned to the other. Variants alternate round by round so that other load on the machine
hits both alike; each cell reports its best round (load only ever slows a round down). Results go
to benchmarks/results/realtime.json and realtime.md; the table is printed with the load average.

    python benchmarks/realtime.py [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The shared harness, beside this script.
from harness.processes import CpuPlan, own_cpu_seconds, pin
from harness.settings import CLIENT_ID, CLIENT_SECRET, RESULTS_DIR, ROOT, TENANT
from harness.tenant_sections import TenantProcess

COLLECTION, STREAM = "pc-customers", "es-web-events"
PROFILES = 10_000
POOL = 100
VARIANTS = ("aiohttp", "httpx", "client")
LABELS = {"aiohttp": "raw aiohttp", "httpx": "raw httpx over httpx-aiohttp", "client": "AmperityClient.call"}

# Targets (measured and reported, never asserted by tests).
TARGET_CPU_RATIO = 2.0
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0


@dataclass(frozen=True)
class Settings:
    mode: str
    seconds: float
    warmup: float
    rounds: int
    lookup_concurrency: tuple[int, ...]
    event_concurrency: int
    open_rate: float
    open_seconds: float

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        if mode == "full":
            return cls(mode, 3.0, 1.0, 3, (1, 100, 1000), 100, 500.0, 10.0)
        if mode == "quick":
            return cls(mode, 1.5, 0.5, 2, (1, 100, 1000), 100, 500.0, 5.0)
        if mode == "smoke":
            return cls(mode, 0.3, 0.2, 1, (1, 100, 1000), 100, 200.0, 0.5)
        raise ValueError(f"unknown mode {mode!r}")


# -- workers (each in its own process) ----------------------------------------------------------------


def _emails(count: int) -> list[str]:
    return [f"customer{i}@example.com" for i in range(count)]


def _event(i: int) -> dict[str, Any]:
    # Events for existing profiles, so the tenant's store does not grow with the run.
    return {"email": f"customer{i % PROFILES}@example.com", "event_type": "page_view", "page": "/home"}


Request = Callable[[int], Awaitable[None]]


async def _access_token(base_url: str, session: Any) -> str:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    async with session.post(
        f"{base_url}/v0/oauth2/token", data=form, headers={"X-Amperity-Tenant": TENANT}
    ) as answer:
        answer.raise_for_status()
        token: str = (await answer.json())["access_token"]
        return token


async def _aiohttp_requests(spec: dict[str, Any], session: Any, token: str) -> tuple[Request, Request]:
    root = spec["root_url"]
    headers = {"Authorization": f"Bearer {token}", "amperity-tenant": TENANT}
    emails = _emails(PROFILES)
    lookup_url = f"{root}/prof/lookup/{COLLECTION}/keychain"
    event_url = f"{root}/prof/events/{STREAM}"

    async def lookup(i: int) -> None:
        async with session.get(
            lookup_url, params={"email": emails[i % PROFILES]}, headers=headers
        ) as response:
            body = json.loads(await response.read())
            assert response.status == 200 and body["profile_id"], body

    async def event(i: int) -> None:
        data = json.dumps(_event(i)).encode()
        async with session.post(
            event_url, data=data, headers={**headers, "Content-Type": "application/json"}
        ) as response:
            await response.read()
            assert response.status == 202, response.status

    return lookup, event


def _httpx_requests(spec: dict[str, Any], http: Any) -> tuple[Request, Request]:
    emails = _emails(PROFILES)
    lookup_url = f"{spec['root_url']}/prof/lookup/{COLLECTION}/keychain"
    event_url = f"{spec['root_url']}/prof/events/{STREAM}"

    async def lookup(i: int) -> None:
        response = await http.get(lookup_url, params={"email": emails[i % PROFILES]})
        assert response.status_code == 200 and response.json()["profile_id"]

    async def event(i: int) -> None:
        response = await http.post(event_url, json=_event(i))
        assert response.status_code == 202, response.status_code

    return lookup, event


def _client_requests(client: Any) -> tuple[Request, Request]:
    from amperity_async.api.realtime import lookup_profile, send_event
    from amperity_async.models import KeychainKeys, StreamEvent

    keys = [KeychainKeys.from_dict({"email": email}) for email in _emails(PROFILES)]

    async def lookup(i: int) -> None:
        profile = await client.call(lookup_profile, COLLECTION, keys=keys[i % PROFILES])
        assert profile.profile_id

    async def event(i: int) -> None:
        answer = await client.call(send_event, STREAM, body=StreamEvent.from_dict(_event(i)))
        assert answer.status_code == 202

    return lookup, event


async def _closed_loop(request: Request, tasks: int, warmup: float, seconds: float) -> dict[str, Any]:
    counter = iter(range(1 << 62))

    async def loop(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            await request(next(counter))
            done += 1
        return done

    await asyncio.gather(*(loop(time.perf_counter() + warmup) for _ in range(tasks)))
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    count = sum(await asyncio.gather(*(loop(started + seconds) for _ in range(tasks))))
    elapsed = time.perf_counter() - started
    cpu = own_cpu_seconds() - cpu_before
    return {"requests": count, "seconds": elapsed, "per_s": count / elapsed, "cpu_us": 1e6 * cpu / count}


async def _open_loop(request: Request, rate: float, warmup: float, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def run(total_seconds: float) -> list[float]:
        latencies: list[float] = []
        start = loop.time() + 0.05

        async def one(i: int, due: float) -> None:
            await request(i)
            latencies.append(loop.time() - due)

        async with asyncio.TaskGroup() as group:
            for i in range(int(total_seconds * rate)):
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(one(i, due))
        return latencies

    await run(warmup)
    latencies = sorted(await run(seconds))
    return {
        "requests": len(latencies),
        "p50_ms": 1e3 * statistics.median(latencies),
        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1e3 * latencies[-1],
    }


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell: a variant, a kind (lookup or event), closed or open loop."""
    import aiohttp

    if spec["variant"] in ("aiohttp", "httpx"):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL)) as session:
            token = await _access_token(spec["base_url"], session)
            if spec["variant"] == "aiohttp":
                lookup, event = await _aiohttp_requests(spec, session, token)
                return await _run_cell(spec, lookup, event)
        import httpx
        from httpx_aiohttp import AiohttpTransport

        headers = {"Authorization": f"Bearer {token}", "amperity-tenant": TENANT}
        transport = AiohttpTransport(
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        )
        async with httpx.AsyncClient(transport=transport, headers=headers) as http:
            lookup, event = _httpx_requests(spec, http)
            return await _run_cell(spec, lookup, event)
    from amperity_async import UNLIMITED, AmperityClient, ClientCredentials

    async with AmperityClient(
        tenant=TENANT,
        auth=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        base_url=spec["base_url"],
        rate_limit=UNLIMITED,
        profile_rate_limit=UNLIMITED,
        realtime_rate_limit=UNLIMITED,
        max_connections=POOL,
    ) as client:
        lookup, event = _client_requests(client)
        result = await _run_cell(spec, lookup, event)
        result["retries"] = client.stats.retries
        return result


async def _run_cell(spec: dict[str, Any], lookup: Request, event: Request) -> dict[str, Any]:
    request = lookup if spec["kind"] == "lookup" else event
    if spec["loop"] == "open":
        return await _open_loop(request, spec["rate"], spec["warmup"], spec["seconds"])
    return await _closed_loop(request, spec["tasks"], spec["warmup"], spec["seconds"])


WORKERS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {"measure": measure}


def run_cell(spec: dict[str, Any], cpus: frozenset[int] | None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "measure", json.dumps(spec)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    pin(proc.pid, cpus)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"the {spec['variant']} worker did not finish within 600 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the {spec['variant']} worker failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


# -- the harness ----------------------------------------------------------------------------------------


def _cells(settings: Settings) -> list[dict[str, Any]]:
    closed = {"loop": "closed", "seconds": settings.seconds, "warmup": settings.warmup}
    cells = [{**closed, "kind": "lookup", "tasks": n} for n in settings.lookup_concurrency]
    cells.append({**closed, "kind": "event", "tasks": settings.event_concurrency})
    cells.append(
        {
            "loop": "open",
            "kind": "lookup",
            "rate": settings.open_rate,
            "seconds": settings.open_seconds,
            "warmup": settings.warmup,
        }
    )
    return cells


def _best(runs: list[dict[str, Any]], loop: str) -> dict[str, Any]:
    if loop == "open":
        return {
            "p50_ms": min(r["p50_ms"] for r in runs),
            "p99_ms": min(r["p99_ms"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
        }
    return {
        "per_s": max(r["per_s"] for r in runs),
        "cpu_us": min(r["cpu_us"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
    }


def run(settings: Settings, scratch: Path) -> dict[str, Any]:
    cpus = CpuPlan.detect()
    client_cpus = cpus.client
    flags = ["--no-rate-limits", "--profiles-per-collection", str(PROFILES)]
    results: list[dict[str, Any]] = []
    with TenantProcess(flags, cpus.server, scratch) as tenant:
        for cell in _cells(settings):
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            for round_number in range(settings.rounds):
                order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    spec = {
                        **cell,
                        "variant": variant,
                        "base_url": tenant.base_url,
                        "root_url": tenant.root_url,
                    }
                    runs[variant].append(run_cell(spec, client_cpus))
            results.append({**cell, **{v: _best(runs[v], cell["loop"]) for v in VARIANTS}, "rounds": runs})
    return {"mode": settings.mode, "load_average": os.getloadavg(), "cells": results}


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| Real-time API | raw aiohttp | raw httpx over httpx-aiohttp | AmperityClient.call "
        "| client vs raw aiohttp | target |",
        "|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        raw, plain, client = cell["aiohttp"], cell["httpx"], cell["client"]
        if cell["loop"] == "closed":
            what = f"{cell['kind']}s, {cell['tasks']} concurrent"
            lines.append(
                f"| {what}: per second | {raw['per_s']:,.0f} | {plain['per_s']:,.0f} | "
                f"{client['per_s']:,.0f} | {client['per_s'] / raw['per_s']:.2f} | |"
            )
            ratio = client["cpu_us"] / raw["cpu_us"]
            lines.append(
                f"| {what}: client CPU µs each | {raw['cpu_us']:,.0f} | {plain['cpu_us']:,.0f} | "
                f"{client['cpu_us']:,.0f} | {ratio:.2f} | ≤ {TARGET_CPU_RATIO:g}: "
                f"{_verdict(ratio <= TARGET_CPU_RATIO)} |"
            )
        else:
            for quantile, target in (("p50", TARGET_ADDED_P50_MS), ("p99", TARGET_ADDED_P99_MS)):
                ours, theirs = client[f"{quantile}_ms"], raw[f"{quantile}_ms"]
                added = ours - theirs
                lines.append(
                    f"| lookups at {cell['rate']:g}/s open loop: {quantile} ms | {theirs:.2f} | "
                    f"{plain[f'{quantile}_ms']:.2f} | {ours:.2f} | {added:+.2f} ms | "
                    f"≤ +{target:g} ms: {_verdict(added <= target)} |"
                )
    load = ", ".join(f"{value:.2f}" for value in results["load_average"])
    lines.append("")
    lines.append(f"Mode {results['mode']}; load average at the end (1, 5, 15 min): {load}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter cells, two rounds")
    parser.add_argument("--smoke", action="store_true", help="a few requests per cell (for the tests)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for realtime.json and .md")
    args = parser.parse_args(argv)
    if args.worker:
        kind, spec = args.worker
        print(json.dumps(asyncio.run(WORKERS[kind](json.loads(spec)))))
        return 0
    settings = Settings.for_mode("smoke" if args.smoke else "quick" if args.quick else "full")
    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as scratch:
        results = run(settings, Path(scratch))
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "realtime.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "realtime.md").write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
