"""What AmperityTransport costs per request, against the same inner transport without it.

Two measurements, each with N concurrent tasks sharing one httpx.AsyncClient:

- ``mock``: an in-memory ``httpx.MockTransport`` answering a 100-item page, so the figure is the
  wrapper's own CPU cost (headers, operation lookup, limiter fast path, retry bookkeeping, body
  read) with no network in the way;
- ``loopback``: httpx over httpx-aiohttp against an aiohttp server in a separate process on
  127.0.0.1, which is what a bulk extraction sees.

Each setup runs ``--rounds`` times, interleaved with the others, and the best round counts. Besides
wall-clock requests/s, the client process's CPU time per request is reported: on a shared machine
it is the steadier measure of what the wrapper itself costs.

Usage: python benchmarks/transport_overhead.py [--requests 20000] [--tasks 50] [--mode mock|loopback|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import attrs
import httpx

from amperity_async.custom.ratelimit import TokenBucket
from amperity_async.custom.transport import AmperityTransport

VERSIONS = {"control-plane": "2024-04-01", "profile": "2025-07-31"}
PAGE = json.dumps(
    {
        "data": [
            {"id": f"seg-{i}", "name": f"Segment {i}", "created_at": "2026-01-01T00:00:00Z"}
            for i in range(100)
        ],
        "next_token": "abc",
    }
).encode()


def wrap(inner: httpx.AsyncBaseTransport, *, limited: bool) -> AmperityTransport:
    # A bucket far above the request rate measures the limiter's fast path, not its waiting.
    bucket = TokenBucket(1e9, capacity=1e9) if limited else None
    return AmperityTransport(inner, tenant="acme", api_versions=VERSIONS, limiter_for=lambda op: bucket)


@attrs.frozen
class Measure:
    per_second: float  # requests per wall-clock second
    cpu_us: float  # client CPU microseconds per request


async def run(base_url: str, transport: httpx.AsyncBaseTransport, requests: int, tasks: int) -> Measure:
    """``requests`` GETs of /api/segments spread over ``tasks`` tasks sharing one client."""
    async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
        await client.get("/segments")  # warm up the pool
        per_task = requests // tasks

        async def worker() -> None:
            for _ in range(per_task):
                response = await client.get("/segments", params={"limit": 100})
                assert response.status_code == 200 and len(response.content) == len(PAGE)

        started, cpu_started = time.perf_counter(), time.process_time()
        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(worker())
        done = per_task * tasks
        return Measure(
            done / (time.perf_counter() - started), (time.process_time() - cpu_started) / done * 1e6
        )


async def interleaved(rounds: int, setups: dict[str, Callable[[], Awaitable[Measure]]]) -> dict[str, Measure]:
    """The best wall rate and the lowest CPU cost of each setup over ``rounds`` interleaved rounds."""
    best: dict[str, Measure] = {}
    for _ in range(rounds):
        for name, measure in setups.items():
            result = await measure()
            previous = best.get(name, Measure(0.0, float("inf")))
            best[name] = Measure(
                max(previous.per_second, result.per_second), min(previous.cpu_us, result.cpu_us)
            )
    return best


async def mock_mode(requests: int, tasks: int, rounds: int) -> dict[str, Measure]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PAGE, headers={"content-type": "application/json"})

    base = "https://app.amperity.com/api"
    return await interleaved(
        rounds,
        {
            "mock: httpx + MockTransport": lambda: run(base, httpx.MockTransport(handler), requests, tasks),
            "mock: + AmperityTransport (no limiter)": lambda: run(
                base, wrap(httpx.MockTransport(handler), limited=False), requests, tasks
            ),
            "mock: + AmperityTransport + TokenBucket": lambda: run(
                base, wrap(httpx.MockTransport(handler), limited=True), requests, tasks
            ),
        },
    )


SERVER = """
import sys
from aiohttp import web
page = sys.stdin.buffer.read()
async def segments(request):
    return web.Response(body=page, content_type="application/json")
app = web.Application()
app.router.add_get("/api/segments", segments)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    import asyncio
    await asyncio.Event().wait()
import asyncio
asyncio.run(main())
"""


async def loopback_mode(requests: int, tasks: int, rounds: int) -> dict[str, Measure]:
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(PAGE)
        await server.stdin.drain()
        server.stdin.close()
        port = int(await server.stdout.readline())
        base = f"http://127.0.0.1:{port}/api"
        return await interleaved(
            rounds,
            {
                "loopback: httpx + httpx-aiohttp": lambda: run(
                    base, AiohttpTransport(limits=limits), requests, tasks
                ),
                "loopback: + AmperityTransport + TokenBucket": lambda: run(
                    base, wrap(AiohttpTransport(limits=limits), limited=True), requests, tasks
                ),
            },
        )
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs per row")
    parser.add_argument("--mode", choices=["mock", "loopback", "both"], default="both")
    args = parser.parse_args()
    rows: dict[str, Measure] = {}
    if args.mode in ("mock", "both"):
        rows |= asyncio.run(mock_mode(args.requests, args.tasks, args.rounds))
    if args.mode in ("loopback", "both"):
        rows |= asyncio.run(loopback_mode(args.requests // 4, args.tasks, args.rounds))
    print(f"{args.tasks} tasks, best of {args.rounds} interleaved rounds")
    print(
        f"| {'setup':<45} | {'req/s':>7} | {'wall vs. unwrapped':>18} "
        f"| {'CPU µs/req':>10} | {'CPU µs added':>12} |"
    )
    print(f"|{'-' * 47}|{'-' * 9}|{'-' * 20}|{'-' * 12}|{'-' * 14}|")
    baselines: dict[str, Measure] = {}
    for name, measure in rows.items():
        baseline = baselines.setdefault(name.split(":")[0], measure)
        print(
            f"| {name:<45} | {measure.per_second:>7.0f} | {measure.per_second / baseline.per_second:>17.1%} "
            f"| {measure.cpu_us:>10.1f} | {measure.cpu_us - baseline.cpu_us:>12.1f} |"
        )


if __name__ == "__main__":
    main()
