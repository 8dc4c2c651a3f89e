"""Benchmark of the Redis-shared rate budget (RedisTokenBucket). Not a test: it measures.

1. acquire() overhead, p50/p99, against a local redis-server: the in-process TokenBucket, the Redis
   bucket with one round trip per acquire, and the Redis bucket with leasing.
2. Four processes sharing the Profile API's budget through Redis (acquire only): achieved rate,
   the busiest one-second window of grants and Redis round trips per request.
3. Processes calling the embedded fake tenant (strict sliding one-second windows) through one
   ``RedisTokenBucket.for_api`` budget: the control-plane API (4 processes x 25 tasks, 10/s) and
   the Profile API (2 processes x 25 tasks, 2000/s), next to the machine's own ceiling: the same
   Profile run with no limit anywhere. Steady-state requests/s (after a warm-up) and the 429s the
   tenant answered.

Writes benchmarks/results/redis.json and prints a markdown table. Needs redis-server on PATH
(started here on a free port) unless --redis-url is given.

    python benchmarks/redis_budget.py [--quick] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "redis.json"
sys.path.insert(0, str(ROOT / "tests"))

NO_LIMIT = 1e9  # a bucket that never waits: what is measured is everything else


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def busiest_second(times: list[float]) -> int:
    """The most of ``times`` in any one-second interval ``[t, t + 1)``."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


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

    results: dict[str, Any] = {
        "in-process TokenBucket": await _measure(TokenBucket(NO_LIMIT, NO_LIMIT).acquire, n)
    }
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    async with RedisTokenBucket(url, tenant=tenant, api="rt", rate=NO_LIMIT, lease_size=0) as bucket:
        results["RedisTokenBucket, no lease"] = await _measure(bucket.acquire, n)
    async with RedisTokenBucket(url, tenant=tenant, api="lease", rate=NO_LIMIT) as bucket:
        row = results[f"RedisTokenBucket, lease {bucket.lease_size}"] = await _measure(bucket.acquire, n)
        row["round_trips_per_acquire"] = bucket.stats.round_trips_per_acquire
    return results


# processes


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


def _steady_rate(times: list[float], start_at: float, stop_at: float, warmup: float) -> float:
    """Completions per second between the end of the warm-up and the stop."""
    since = start_at + warmup
    return sum(1 for t in times if since <= t <= stop_at) / (stop_at - since)


# 2. four processes on one Redis budget, acquire only


async def _acquire_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    async with RedisTokenBucket.for_api(spec["url"], tenant=spec["tenant"], api="profile") as bucket:
        await bucket.acquire()  # connect and load the script before the clock starts
        granted: list[float] = []
        await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
        stop_at = spec["start_at"] + spec["seconds"]

        async def worker() -> None:
            while time.time() < stop_at:
                await bucket.acquire()
                granted.append(time.time())

        round_trips = bucket.stats.round_trips
        await _until(stop_at, [worker() for _ in range(spec["tasks"])])
        return {
            "granted": granted,
            "round_trips": bucket.stats.round_trips - round_trips,
            "rate": bucket.rate,
            "window": bucket.window,
            "lease_size": bucket.lease_size,
        }


def shared_acquire(url: str, seconds: float, processes: int = 4, tasks: int = 50) -> dict[str, Any]:
    spec = {
        "url": url,
        "tenant": f"bench-{uuid.uuid4().hex[:8]}",
        "tasks": tasks,
        "start_at": time.time() + 3.0,
        "seconds": seconds,
    }
    workers = _spawn("acquire", spec, processes)
    granted = [t for w in workers for t in w["granted"]]
    stop_at = spec["start_at"] + seconds
    return {
        "processes": processes,
        "tasks_per_process": tasks,
        "rate": workers[0]["rate"],
        "window": workers[0]["window"],
        "lease_size": workers[0]["lease_size"],
        "seconds": seconds,
        "granted": len(granted),
        "steady_rate": _steady_rate(granted, spec["start_at"], stop_at, warmup=1.0),
        "busiest_second": busiest_second(granted),
        "per_process_rate": [len(w["granted"]) / seconds for w in workers],
        "round_trips_per_request": sum(w["round_trips"] for w in workers) / max(1, len(granted)),
    }


# 3. processes against the fake tenant


async def _tenant_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from amperity_async.custom.client import AmperityClient
    from amperity_async.custom.errors import RateLimitError
    from amperity_async.custom.ratelimit import RateLimiter, TokenBucket
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    api = spec["api"]
    bucket: RateLimiter
    if spec["limited"]:
        bucket = RedisTokenBucket.for_api(spec["redis_url"], tenant=spec["tenant"], api=api)
    else:
        bucket = TokenBucket(NO_LIMIT, NO_LIMIT)
    limits = {"rate_limit": bucket} if api == "control-plane" else {"profile_rate_limit": bucket}
    operation, params = spec["operation"], spec["params"]
    done: list[float] = []
    refused = 0
    async with AsyncExitStack() as stack:
        if isinstance(bucket, RedisTokenBucket):
            stack.push_async_callback(bucket.aclose)  # hands back the last lease
        client = await stack.enter_async_context(
            AmperityClient(tenant=spec["tenant"], auth=spec["token"], base_url=spec["base_url"], **limits)
        )
        await client.call(operation, **params)  # connections and token before the clock starts
        await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
        stop_at = spec["start_at"] + spec["seconds"]

        async def worker() -> None:
            nonlocal refused
            while time.time() < stop_at:
                try:
                    await client.call(operation, **params)
                    done.append(time.time())
                except RateLimitError:
                    refused += 1

        stuck = await _until(stop_at, [worker() for _ in range(spec["tasks"])])
        stats = getattr(bucket, "stats", None)
        result = {
            "tasks_ignoring_cancellation": stuck,
            "done": done,
            "rate_limit_errors": refused,
            "retried_429s": client.stats.rate_limited,
            "round_trips": getattr(stats, "round_trips", 0),
            "acquired": getattr(stats, "acquired", 0),
        }
        if stuck:
            # Tasks that ignore cancellation would keep the loop (and this process) alive forever.
            print(json.dumps(result), flush=True)
            os._exit(0)
        return result


def against_fake_tenant(
    redis_url: str, api: str, seconds: float, processes: int, tasks: int, limited: bool = True
) -> dict[str, Any]:
    """``limited=False``: no limit in the tenant nor the client (the machine's own ceiling)."""
    from amperity_async.custom.client import CONTROL_PLANE_RATE, PROFILE_RATE
    from amperity_async.testing import start_in_thread

    limit = CONTROL_PLANE_RATE if api == "control-plane" else PROFILE_RATE
    operation = "list_segment" if api == "control-plane" else "list_indexes"
    warmup = min(2.0, seconds / 4)
    with start_in_thread(rows=50, rate_limits=limited) as tenant:
        before = tenant.stats
        spec = {
            "api": api,
            "redis_url": redis_url,
            "tenant": tenant.config.tenant,
            "token": tenant.issue_token(3600),
            "base_url": tenant.base_url,
            "limited": limited,
            "operation": operation,
            "params": {"limit": 1} if operation == "list_segment" else {},
            "tasks": tasks,
            "start_at": time.time() + 4.0,
            "seconds": seconds,
        }
        workers = _spawn("tenant", spec, processes)
        after = tenant.stats
    done = [t for w in workers for t in w["done"]]
    stop_at = spec["start_at"] + seconds
    steady = _steady_rate(done, spec["start_at"], stop_at, warmup)
    return {
        "api": api,
        "limited": limited,
        "operation": operation,
        "server_limit": limit,
        "processes": processes,
        "tasks_per_process": tasks,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "requests_ok": len(done),
        "steady_rate": steady,
        "fraction_of_limit": steady / limit,
        "busiest_second": busiest_second(done),
        "per_process_rate": [_steady_rate(w["done"], spec["start_at"], stop_at, warmup) for w in workers],
        "server_429s": after.get("rate_limited", 0) - before.get("rate_limited", 0),
        "client_rate_limit_errors": sum(w["rate_limit_errors"] for w in workers),
        "tasks_ignoring_cancellation": sum(w["tasks_ignoring_cancellation"] for w in workers),
        "round_trips_per_request": sum(w["round_trips"] for w in workers)
        / max(1, sum(w["acquired"] for w in workers)),
    }


def profile_verdict(limited: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """The Profile budget's target: 0.95 of the limit, or of the machine's ceiling if that is lower."""
    limit = limited["server_limit"]
    reference, which = (
        (limit, "the documented limit")
        if limit <= ceiling["steady_rate"]
        else (ceiling["steady_rate"], "the machine's ceiling (no limit at all)")
    )
    return {
        "reference": reference,
        "reference_is": which,
        "fraction": limited["steady_rate"] / reference,
        "target_met": limited["steady_rate"] >= 0.95 * reference,
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
            f"one for_api('profile') budget ({shared['rate']:g}/s, window {shared['window']}), acquire only"
        ),
        "",
        "| seconds | granted | steady rate | busiest second | per process | round trips / request |",
        "|---|---|---|---|---|---|",
        (
            f"| {shared['seconds']:.0f} | {shared['granted']} | {shared['steady_rate']:.0f}/s "
            f"| {shared['busiest_second']} | {', '.join(f'{r:.0f}' for r in shared['per_process_rate'])} "
            f"| {shared['round_trips_per_request']:.3f} |"
        ),
    ]
    rows = results.get("fake_tenant", [])
    if rows:
        lines += [
            "",
            "### Against the fake tenant (strict sliding 1 s windows), one run",
            "",
            (
                "| API (limit) | budget | processes x tasks | steady rate | of limit | busiest second "
                "| per process | 429s | round trips / request |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            budget = f"for_api('{row['api']}')" if row["limited"] else "none (tenant unlimited)"
            lines.append(
                f"| {row['api']} ({row['server_limit']:g}/s) | {budget} "
                f"| {row['processes']} x {row['tasks_per_process']} | {row['steady_rate']:.1f}/s "
                f"| {row['fraction_of_limit']:.3f} | {row['busiest_second']} "
                f"| {', '.join(f'{r:.1f}' for r in row['per_process_rate'])} | {row['server_429s']} "
                f"| {row['round_trips_per_request']:.3f} |"
            )
        verdict = results.get("profile_verdict")
        if verdict:
            lines += [
                "",
                (
                    f"Profile API: {verdict['fraction']:.3f} of {verdict['reference']:.0f}/s, "
                    f"{verdict['reference_is']} being the lower; target 0.95 "
                    f"{'met' if verdict['target_met'] else 'NOT met'}."
                ),
            ]
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
        worker = _acquire_worker if kind == "acquire" else _tenant_worker
        print(json.dumps(asyncio.run(worker(spec))))
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
                "load_average": os.getloadavg(),
            },
            "overhead": asyncio.run(overhead(url, 2000 if args.quick else 20000)),
            "shared_acquire": shared_acquire(url, 3.0 if args.quick else 10.0),
        }
        if not args.skip_tenant:
            control = against_fake_tenant(url, "control-plane", 8.0 if args.quick else 30.0, 4, 25)
            profile = against_fake_tenant(url, "profile", 4.0 if args.quick else 10.0, 2, 25)
            ceiling = against_fake_tenant(url, "profile", 4.0 if args.quick else 10.0, 2, 25, limited=False)
            results["fake_tenant"] = [control, profile, ceiling]
            results["profile_verdict"] = profile_verdict(profile, ceiling)
        results["machine"]["load_average_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"\n(written to {RESULTS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
