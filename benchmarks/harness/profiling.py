"""Where a variant's CPU goes: py-spy samples a cell worker during one extra (uncounted) round.

Each sample is charged to the innermost frame of a known layer (stdlib helpers count for the layer
that called them), so the shares add up to 100% of the worker's samples; µs per page are those
shares of the round's CPU per page.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cells import CellWorker

PROFILED_VARIANTS = ("aiohttp", "call", "pages", "paginate")
PROFILE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("benchmark loop", ("benchmarks/harness/", "benchmarks/run.py")),
    ("response checks (custom/validation.py, msgspec)", ("custom/validation.py",)),
    ("model conversion (generated from_dict)", ("amperity_async/models/",)),
    ("generated request building (_get_kwargs)", ("amperity_async/api/",)),
    ("rate limiter (custom/ratelimit.py)", ("custom/ratelimit.py",)),
    ("AmperityTransport (custom/transport.py)", ("custom/transport.py",)),
    ("auth flow (custom/auth.py)", ("custom/auth.py",)),
    ("pagination and prefetch (custom/pagination.py)", ("custom/pagination.py",)),
    ("facade (custom/client.py)", ("custom/client.py",)),
    ("other custom/ modules", ("custom/",)),
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

    def share(n: int) -> float:
        return n / total if total else 0.0

    return {
        "samples": total,
        "layers": {k: share(v) for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
        "functions_inclusive": {k: share(inclusive.get(k, 0)) for k in PROFILED_FUNCTIONS},
        "top_leaves": {k: share(v) for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]},
    }


def py_spy() -> Path | None:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    return Path(found) if found else None


def profile_workers(workers: dict[str, CellWorker], request: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """One sampled round per profiled variant, for the page kind and tasks in ``request``."""
    sampler_path = py_spy()
    if sampler_path is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    seconds = max(1, int(request["seconds"]))
    results: dict[str, Any] = {"kind": request["kind"], "tasks": request["tasks"], "seconds": seconds}
    for variant in PROFILED_VARIANTS:
        worker = workers.get(variant)
        if worker is None:
            continue
        out = out_dir / f"profile-{request['kind']}-{variant}.txt"
        samplers: list[subprocess.Popen[str]] = []

        def attach(pid: int, out: Path = out, samplers: list[subprocess.Popen[str]] = samplers) -> None:
            command = [
                str(sampler_path),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ]
            samplers.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )

        # The round outlasts the sampler by a little, so that every sample falls in the timed window.
        measured = worker.measure(request | {"seconds": seconds + 0.5}, on_timed=attach)
        try:
            report, _ = samplers[0].communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            samplers[0].kill()
            report, _ = samplers[0].communicate()
        if samplers[0].returncode != 0 or not out.exists():
            results[variant] = {"error": f"py-spy failed: {report.strip()[-500:]}"}
            continue
        results[variant] = profile_breakdown(out.read_text()) | {
            "cpu_us_per_page": 1e6 * measured["cpu_seconds"] / measured["pages"],
            "collapsed_stacks": out.name,
        }
    return results
