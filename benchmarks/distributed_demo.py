"""``make demo-distributed``: four worker processes, one fake tenant, one rate budget in Redis.

Starts a throw-away redis-server and a fake tenant with the real limits, runs four
``amperity-async extract`` workers (each a different control-plane list) that share the tenant's
10 requests/s through ``--redis-url``, and prints each worker's rate, the total against the limit,
and the 429s the tenant answered. Everything it starts is stopped again, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

WORKERS = ("list_segment", "list_campaign", "list_events", "list_workflows")
ROWS = 2000
LIMIT = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")


def main() -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("error: redis-server is not installed (Debian: apt-get install redis-server)", file=sys.stderr)
        return 2
    processes: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="amperity-distributed-"))
    try:
        redis_port, tenant_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [
                    redis_server,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_until(
            lambda: socket.create_connection(("127.0.0.1", redis_port), timeout=0.5).close() is None, "redis"
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "amperity_async",
                    "fake-tenant",
                    "--port",
                    str(tenant_port),
                    "--rows",
                    str(ROWS),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        root = f"http://127.0.0.1:{tenant_port}"
        wait_until(
            lambda: urllib.request.urlopen(f"{root}/_fake/stats", timeout=1).status == 200, "the fake tenant"
        )
        env = {
            **os.environ,
            "AMPERITY_TENANT": "acme",
            "AMPERITY_BASE_URL": f"{root}/api",
            "AMPERITY_CLIENT_ID": "fake-client",
            "AMPERITY_CLIENT_SECRET": "fake-secret",
            "AMPERITY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        print(
            f"redis on :{redis_port}, fake tenant at {root}/api (10 requests/s on the control plane); "
            f"{len(WORKERS)} workers sharing one budget",
            flush=True,
        )
        started = time.monotonic()
        workers = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "amperity_async",
                    "extract",
                    name,
                    "--limit",
                    str(LIMIT),
                    "--expected-workers",
                    str(len(WORKERS)),
                    "--out",
                    str(workdir / f"{name}.jsonl"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name in WORKERS
        }
        processes.extend(workers.values())
        finished: dict[str, float] = {}
        for name, proc in workers.items():
            _, err = proc.communicate(timeout=300)
            finished[name] = time.monotonic() - started
            if proc.returncode != 0:
                print(f"worker {name} failed: {err.decode().strip()}", file=sys.stderr)
                return 1
        wall = time.monotonic() - started
        with urllib.request.urlopen(f"{root}/_fake/stats", timeout=5) as response:
            stats = json.load(response)
        print(f"\n{'worker':<16} {'rows':>6} {'pages':>6} {'seconds':>8} {'req/s':>6}")
        total_pages = 0
        for name in WORKERS:
            state = json.loads((workdir / f"{name}.jsonl.checkpoint").read_text())
            total_pages += state["pages"]
            seconds = finished[name]
            print(
                f"{name:<16} {state['rows']:>6} {state['pages']:>6} "
                f"{seconds:>8.2f} {state['pages'] / seconds:>6.2f}"
            )
        total_rate = total_pages / wall
        print(
            f"{'total':<16} {'':>6} {total_pages:>6} {wall:>8.2f} {total_rate:>6.2f}"
            f"   = {total_rate / 10:.2f} of the 10/s limit; the tenant answered {stats['rate_limited']} x 429"
        )
        return 0
    finally:
        for proc in reversed(processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
