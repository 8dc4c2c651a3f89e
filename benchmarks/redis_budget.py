"""Benchmark of the Redis-shared rate budget (RedisTokenBucket). Not a test: it measures.

1. acquire() overhead, p50/p99, against a local redis-server: the in-process TokenBucket, the Redis
   bucket with one round trip per acquire, and the Redis bucket with leasing.
2. Four processes sharing the Profile API's 2000/s budget through Redis (acquire only): achieved
   rate, the bound ``capacity + rate * t`` and Redis round trips per request.
3. Four processes x 50 tasks calling the embedded fake tenant through one Redis budget: the
   control-plane API (10/s) and the Profile API (2000/s); achieved rate and 429s as the tenant
   counted them.

Writes benchmarks/results/redis.json and prints a markdown table. Needs redis-server on PATH
(started here on a free port) unless --redis-url is given.

    python benchmarks/redis_budget.py [--quick] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "redis.json"
sys.path.insert(0, str(ROOT / "tests"))

# The fake tenant refuses any request that would make more than its limit in any 1 s interval.
# Exact spacing at the limit would be refused now and then for network jitter alone, so the budget
# is configured a few percent under it (the 4% at 10/s leave 40 ms of slack per second).
# At 2000/s a bucket of 41 tokens (the default with leasing) refills in 20 ms, less than the
# scheduling gaps of four busy processes on a small machine, so the Profile budget gets room for
# bursts and gives it up from its rate: rate + capacity = the limit, the bound of any 1 s window.
CONTROL_PLANE_LIMIT, CONTROL_PLANE_BUDGET, CONTROL_PLANE_CAPACITY = 10, 9.6, None
PROFILE_LIMIT, PROFILE_BUDGET, PROFILE_CAPACITY = 2000, 1850.0, 150.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# 1. overhead


async def _measure(acquire: Any, n: int) -> dict[str, float]:
    for _ in range(min(200, n)):  # warm-up: connections, script load
        await acquire()
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await acquire()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return {
        "p50_us": _percentile(samples, 0.50),
        "p99_us": _percentile(samples, 0.99),
        "mean_us": statistics.fmean(samples),
    }


async def overhead(url: str, n: int) -> dict[str, Any]:
    from amperity_async.custom.ratelimit import TokenBucket
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    huge = 1e9  # never short of tokens: what is measured is the bookkeeping and the round trip
    results: dict[str, Any] = {"in-process TokenBucket": await _measure(TokenBucket(huge, huge).acquire, n)}
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    async with RedisTokenBucket(url, tenant=tenant, api="rt", rate=huge, lease_size=0) as bucket:
        results["RedisTokenBucket, no lease"] = await _measure(bucket.acquire, n)
    async with RedisTokenBucket(url, tenant=tenant, api="lease", rate=huge) as bucket:
        results[f"RedisTokenBucket, lease {bucket.lease_size}"] = await _measure(bucket.acquire, n)
        results[f"RedisTokenBucket, lease {bucket.lease_size}"]["round_trips_per_acquire"] = (
            bucket.stats.round_trips_per_acquire
        )
    return results


# 2. four processes on one Redis budget, acquire only


async def _until(stop_at: float, workers: list[Any]) -> int:
    """Run the workers (loops that end at ``stop_at``) until then, and cancel what is still waiting.

    Only completed calls count. Returns how many tasks were still running 10 s after being
    cancelled (a cancellation swallowed somewhere below).
    """
    tasks = [asyncio.ensure_future(w) for w in workers]
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=10.0)
    return len(pending)


async def _acquire_worker(
    url: str, tenant: str, rate: float, tasks: int, start_at: float, seconds: float
) -> dict[str, Any]:
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    async with RedisTokenBucket(url, tenant=tenant, api="profile", rate=rate) as bucket:
        await bucket.acquire()  # connect and load the script before the clock starts
        count = 0
        await asyncio.sleep(max(0.0, start_at - time.time()))
        first, stop_at = time.time(), start_at + seconds

        async def worker() -> None:
            nonlocal count
            while time.time() < stop_at:
                await bucket.acquire()
                count += 1

        round_trips = bucket.stats.round_trips
        await _until(stop_at, [worker() for _ in range(tasks)])
        return {
            "count": count,
            "first": first,
            "last": time.time(),
            "round_trips": bucket.stats.round_trips - round_trips,
            "capacity": bucket.capacity,
            "lease_size": bucket.lease_size,
        }


def _spawn(kind: str, spec: dict[str, Any], processes: int) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
        results.append(json.loads(out))
    return results


def shared_acquire(url: str, seconds: float, processes: int = 4, tasks: int = 50) -> dict[str, Any]:
    rate = float(PROFILE_LIMIT)
    spec = {
        "url": url,
        "tenant": f"bench-{uuid.uuid4().hex[:8]}",
        "rate": rate,
        "tasks": tasks,
        "start_at": time.time() + 3.0,
        "seconds": seconds,
    }
    workers = _spawn("acquire", spec, processes)
    total = sum(w["count"] for w in workers)
    window = max(w["last"] for w in workers) - min(w["first"] for w in workers)
    round_trips = sum(w["round_trips"] for w in workers)
    capacity = workers[0]["capacity"]
    return {
        "processes": processes,
        "tasks_per_process": tasks,
        "rate": rate,
        "capacity": capacity,
        "lease_size": workers[0]["lease_size"],
        "seconds": window,
        "granted": total,
        "bound": capacity + rate * window,
        "within_bound": total <= capacity + rate * window,
        "achieved_rate": total / window,
        "per_process_rate": [w["count"] / window for w in workers],
        "round_trips_per_request": round_trips / total,
    }


# 3. four processes against the fake tenant


async def _tenant_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.custom.client import AmperityClient
    from amperity_async.custom.errors import RateLimitError
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    api = spec["api"]
    rate = spec["budget"] or 1e6  # no budget: measure what the machine itself can do
    bucket = RedisTokenBucket(
        spec["redis_url"], tenant=spec["tenant"], api=api, rate=rate, capacity=spec["capacity"]
    )
    limits = {"rate_limit": bucket} if api == "control-plane" else {"profile_rate_limit": bucket}
    operation, params = spec["operation"], spec["params"]
    ok = refused = 0
    async with (
        bucket,
        AmperityClient(
            tenant=spec["tenant"], auth=spec["token"], base_url=spec["base_url"], **limits
        ) as client,
    ):
        await client.call(operation, **params)  # connections and token before the clock starts
        await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
        first, stop_at = time.time(), spec["start_at"] + spec["seconds"]

        async def worker() -> None:
            nonlocal ok, refused
            while time.time() < stop_at:
                try:
                    await client.call(operation, **params)
                    ok += time.time() <= stop_at
                except RateLimitError:
                    refused += 1

        stuck = await _until(stop_at, [worker() for _ in range(spec["tasks"])])
        result = {
            "tasks_ignoring_cancellation": stuck,
            "ok": ok,
            "rate_limit_errors": refused,
            "retried_429s": client.stats.rate_limited,
            "first": first,
            "last": min(time.time(), stop_at),
            "round_trips": bucket.stats.round_trips,
            "acquired": bucket.stats.acquired,
        }
        if stuck:
            # Tasks that ignore cancellation would keep the loop (and this process) alive forever.
            print(json.dumps(result), flush=True)
            os._exit(0)
        return result


def against_fake_tenant(
    redis_url: str, api: str, seconds: float, processes: int = 4, tasks: int = 50, ceiling: bool = False
) -> dict[str, Any]:
    """``ceiling``: the tenant enforces no limit and the budget is unbounded (the machine's own rate)."""
    from amperity_async.testing import start_in_thread

    budget, capacity, limit = (
        (CONTROL_PLANE_BUDGET, CONTROL_PLANE_CAPACITY, CONTROL_PLANE_LIMIT)
        if api == "control-plane"
        else (PROFILE_BUDGET, PROFILE_CAPACITY, PROFILE_LIMIT)
    )
    operation = "list_segment" if api == "control-plane" else "list_indexes"
    with start_in_thread(rows=50, rate_limits=not ceiling) as tenant:
        before = tenant.stats
        spec = {
            "api": api,
            "redis_url": redis_url,
            "tenant": tenant.config.tenant,
            "token": tenant.issue_token(3600),
            "base_url": tenant.base_url,
            "budget": None if ceiling else budget,
            "capacity": None if ceiling else capacity,
            "operation": operation,
            "params": {"limit": 1} if operation == "list_segment" else {},
            "tasks": tasks,
            "start_at": time.time() + 4.0,
            "seconds": seconds,
        }
        workers = _spawn("tenant", spec, processes)
        after = tenant.stats
    ok = sum(w["ok"] for w in workers)
    window = max(w["last"] for w in workers) - min(w["first"] for w in workers)
    answered_429 = after.get("rate_limited", 0) - before.get("rate_limited", 0)
    return {
        "api": api + (" (machine ceiling: no limits)" if ceiling else ""),
        "operation": operation,
        "server_limit": limit,
        "budget": None if ceiling else budget,
        "capacity": None if ceiling else capacity,
        "processes": processes,
        "tasks_per_process": tasks,
        "seconds": window,
        "requests_ok": ok,
        "achieved_rate": ok / window,
        "fraction_of_limit": ok / window / limit,
        "per_process_rate": [w["ok"] / window for w in workers],
        "server_429s": answered_429,
        "client_rate_limit_errors": sum(w["rate_limit_errors"] for w in workers),
        "tasks_ignoring_cancellation": sum(w["tasks_ignoring_cancellation"] for w in workers),
        "round_trips_per_request": sum(w["round_trips"] for w in workers)
        / max(1, sum(w["acquired"] for w in workers)),
    }


# report


def _table(results: dict[str, Any]) -> str:
    lines = [
        "### acquire() overhead (sequential, local redis-server)",
        "",
        "| limiter | p50 | p99 |",
        "|---|---|---|",
    ]
    for name, row in results["overhead"].items():
        extra = (
            f" ({row['round_trips_per_acquire']:.3f} round trips/acquire)"
            if "round_trips_per_acquire" in row
            else ""
        )
        lines.append(f"| {name}{extra} | {row['p50_us']:.1f} µs | {row['p99_us']:.1f} µs |")
    shared = results["shared_acquire"]
    lines += [
        "",
        (
            f"### {shared['processes']} processes x {shared['tasks_per_process']} tasks, "
            f"one {shared['rate']:g}/s budget (acquire only)"
        ),
        "",
        "| seconds | granted | bound (capacity + rate·t) | rate achieved | per process | round trips / request |",
        "|---|---|---|---|---|---|",
        (
            f"| {shared['seconds']:.1f} | {shared['granted']} | {shared['bound']:.0f} "
            f"| {shared['achieved_rate']:.0f}/s | {', '.join(f'{r:.0f}' for r in shared['per_process_rate'])} "
            f"| {shared['round_trips_per_request']:.3f} |"
        ),
    ]
    tenant_rows = results.get("fake_tenant", [])
    if tenant_rows:
        lines += [
            "",
            "### 4 processes x 50 tasks against the fake tenant, one Redis budget",
            "",
            "| API (limit) | budget | seconds | rate achieved | of limit | per process | 429s | round trips / request |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in tenant_rows:
            budget = f"{row['budget']:g}/s" if row["budget"] else "none"
            if row["capacity"]:
                budget += f", capacity {row['capacity']:g}"
            lines.append(
                f"| {row['api']} ({row['server_limit']}/s) | {budget} | {row['seconds']:.1f} "
                f"| {row['achieved_rate']:.1f}/s | {row['fraction_of_limit']:.3f} "
                f"| {', '.join(f'{r:.1f}' for r in row['per_process_rate'])} | {row['server_429s']} "
                f"| {row['round_trips_per_request']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting a redis-server")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark)")
    parser.add_argument("--skip-tenant", action="store_true", help="leave out the fake-tenant runs")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    # make bench passes the same BENCH_FLAGS to every benchmark; flags meant for others are ignored.
    args, _ = parser.parse_known_args()
    if args.worker:
        kind, spec = args.worker[0], json.loads(args.worker[1])
        if kind == "acquire":
            result = asyncio.run(
                _acquire_worker(
                    spec["url"],
                    spec["tenant"],
                    spec["rate"],
                    spec["tasks"],
                    spec["start_at"],
                    spec["seconds"],
                )
            )
        else:
            result = asyncio.run(_tenant_worker(spec))
        print(json.dumps(result))
        return

    with ExitStack() as stack:
        url = args.redis_url
        if url is None:
            from redis_server import RedisServer

            url = stack.enter_context(RedisServer()).url
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "overhead": asyncio.run(overhead(url, 2000 if args.quick else 20000)),
            "shared_acquire": shared_acquire(url, 2.0 if args.quick else 10.0),
        }
        if not args.skip_tenant:
            results["fake_tenant"] = [
                against_fake_tenant(url, "control-plane", 5.0 if args.quick else 30.0),
                against_fake_tenant(url, "profile", 3.0 if args.quick else 10.0),
                against_fake_tenant(url, "profile", 3.0 if args.quick else 10.0, ceiling=True),
            ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"\n(written to {RESULTS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
