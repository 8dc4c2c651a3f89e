"""``--workers`` scaling, Dask throughput and the shared budget's fidelity, side by side in one run.

1. Scaling: nginx serves static pages of one windowed list (``list_events``, two shards' worth of
   unique events), so the server costs the clients next to nothing; the CLI extracts it with
   ``--workers 1`` (both shards in one process) and ``--workers 2``, in interleaved rounds. Rows/s
   from process start to exit, client CPU per page (every process, from the kernel's accounting),
   and the outputs compared byte for byte.
2. Dask: the same pages through ``run_on_dask`` on a ``LocalCluster`` of 2 worker processes (the
   cluster started beforehand, as a cluster is), its output compared with the CLI's.
3. Fidelity of the local shared budget against the fake tenant's strict sliding windows: 4 workers
   on the control plane's 10/s, and ``extract-all`` with 2 workers on a Profile API limit the
   fake tenant can keep up with here.

    python benchmarks/workers.py [--quick] [--json PATH]

``measure(quick)`` returns the figures and ``markdown(figures)`` the table, for ``run.py``.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from amperity_async.custom.extract import Connection, ListJob, OwnBudget, Rates, run_on_dask
from amperity_async.custom.extract.windows import Window, format_timestamp
from amperity_async.custom.operations import REGISTRY
from amperity_async.custom.ratelimit import UNLIMITED
from amperity_async.testing import FakeTenantConfig, start_in_thread

CLI = [sys.executable, "-m", "amperity_async"]
WINDOW = Window(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
SHARDS = 2
PER_PAGE = 100
EVENTS_OPERATION = REGISTRY.get("list_events")
assert EVENTS_OPERATION is not None
REGISTRY_EVENTS_PATH = EVENTS_OPERATION.path
TOKEN = '{"access_token":"static-workers-token","token_type":"Bearer","expires_in":86400}'


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _template_events() -> list[dict[str, Any]]:
    """Real-shaped events from the fake tenant, to vary into unique ones."""
    with start_in_thread(FakeTenantConfig(rows=PER_PAGE, seed=5, rate_limits=False)) as tenant:
        env = _env(tenant.base_url, tenant.client_id, tenant.client_secret, tenant.config.tenant)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "events.jsonl"
            _run([*_events_args(out), "--control-plane-rate", "unlimited"], env)
            return [json.loads(line) for line in out.read_text().splitlines()]


def build_site(folder: Path, pages_per_shard: int) -> int:
    """Static pages of ``SHARDS`` windows of list_events, chained by simple cursors; the rows."""
    templates = _template_events()
    pages = folder / "pages"
    pages.mkdir(parents=True)
    encoder = json.JSONEncoder(separators=(",", ":"))
    for shard, window in enumerate(WINDOW.split(SHARDS)):
        step = (window.end - window.start) / (pages_per_shard * PER_PAGE + 1)
        for page in range(pages_per_shard):
            items = []
            for i in range(PER_PAGE):
                n = page * PER_PAGE + i
                event = dict(templates[n % len(templates)])
                event["event_id"] = f"ev-{shard}-{n}"
                event["happened_at"] = format_timestamp(window.start + step * (n + 1))
                items.append(event)
            body: dict[str, Any] = {"data": items}
            if page + 1 < pages_per_shard:
                body["next_token"] = f"s{shard}p{page + 1}"
            name = f"s{shard}first" if page == 0 else f"s{shard}p{page}"
            (pages / f"{name}.json").write_text(encoder.encode(body))
    return SHARDS * pages_per_shard * PER_PAGE


def _nginx_config(folder: Path, port: int) -> str:
    firsts = "\n".join(
        f'        "~^{window.start.date().isoformat()}" s{i}first;'
        for i, window in enumerate(WINDOW.split(SHARDS))
    )
    temp = "\n".join(
        f"    {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    default_type application/json;
    keepalive_timeout 3600s;
    keepalive_requests 1000000000;
    open_file_cache max=100000 inactive=3600s;
    map $arg_happened_from $bench_first {{
        default "";
{firsts}
    }}
    map $arg_next_token $bench_page {{
        "" $bench_first;
        default $arg_next_token;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {folder};
        location = /api/v0/oauth2/token {{ return 200 '{TOKEN}'; }}
        location {REGISTRY_EVENTS_PATH} {{ try_files /pages/$bench_page.json =404; }}
    }}
}}
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(base_url: str, client_id: str, client_secret: str, tenant: str = "acme") -> dict[str, str]:
    return {
        **os.environ,
        "AMPERITY_TENANT": tenant,
        "AMPERITY_BASE_URL": base_url,
        "AMPERITY_CLIENT_ID": client_id,
        "AMPERITY_CLIENT_SECRET": client_secret,
    }


def _events_args(out: Path, limit: int = PER_PAGE) -> list[str]:
    return [
        "extract",
        "list_events",
        "--limit",
        str(limit),
        "--out",
        str(out),
        "--overwrite",
        "--param",
        f"happened_from={format_timestamp(WINDOW.start)}",
        "--param",
        f"happened_to={format_timestamp(WINDOW.end)}",
    ]


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds from start to exit, the CPU of the command and all its processes, its stderr."""
    seconds, cpu, stderr, _ = _run_sampled(args, env, sample=False)
    return seconds, cpu, stderr


def _run_sampled(
    args: list[str], env: dict[str, str], *, sample: bool = True
) -> tuple[float, float, str, dict[str, Any]]:
    """``_run``, and what its processes did: each one's CPU and when it was seen (``ProcessTree``)."""
    cpu, started = _children_cpu(), time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        tree = ProcessTree(proc.pid, started)
        if sample:
            tree.follow(proc)
        try:
            proc.wait(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seconds = time.perf_counter() - started
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {text.strip()[-500:]}")
    return seconds, _children_cpu() - cpu, text, tree.summary(seconds)


class ProcessTree:
    """Samples the command's processes every ``INTERVAL`` seconds (Linux ``/proc``): when each was
    first and last seen and its CPU then. Enough to see whether the workers ran at the same time,
    what the parent spent, and how long the parent ran on alone after the last worker (the merge)."""

    INTERVAL = 0.05

    def __init__(self, root: int, started: float) -> None:
        self.root = root
        self.started = started
        self.seen: dict[int, dict[str, float]] = {}

    def follow(self, proc: subprocess.Popen[bytes]) -> None:
        def sample() -> None:
            while proc.poll() is None:
                now = time.perf_counter() - self.started
                for pid in self._tree():
                    cpu = _proc_cpu_or_none(pid)
                    if cpu is not None:
                        entry = self.seen.setdefault(pid, {"first": now, "cpu": 0.0})
                        entry["last"], entry["cpu"] = now, cpu
                time.sleep(self.INTERVAL)

        threading.Thread(target=sample, daemon=True).start()

    def _tree(self) -> list[int]:
        found, queue = [], [self.root]
        while queue:
            pid = queue.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    queue += [int(child) for child in (task / "children").read_text().split()]
                except OSError:
                    continue
        return found

    def summary(self, seconds: float) -> dict[str, Any]:
        workers = [entry for pid, entry in sorted(self.seen.items()) if pid != self.root]
        parent = self.seen.get(self.root, {})
        summary: dict[str, Any] = {"parent_cpu": parent.get("cpu"), "workers": workers}
        if workers:
            summary["workers_overlap"] = min(w["last"] for w in workers) - max(w["first"] for w in workers)
            summary["before_workers"] = min(w["first"] for w in workers)
            summary["after_workers"] = seconds - max(w["last"] for w in workers)
        return summary


def _proc_cpu_or_none(pid: int) -> float | None:
    try:
        return _proc_cpu(pid)
    except (OSError, IndexError, ValueError):
        return None


def scaling(folder: Path, rounds: int, pages_per_shard: int) -> dict[str, Any]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        return {"skipped": "nginx not found (apt-get install nginx-light)"}
    rows = build_site(folder, pages_per_shard)
    pages = rows // PER_PAGE
    port = _free_port()
    (folder / "nginx.conf").write_text(_nginx_config(folder, port))
    server = subprocess.Popen([nginx, "-c", str(folder / "nginx.conf")], stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        base_url = f"http://127.0.0.1:{port}/api"
        env = _env(base_url, "bench", "bench-secret-0000")
        rates = ["--control-plane-rate", "unlimited", "--profile-rate", "unlimited"]
        results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        digests: set[str] = set()
        for _ in range(rounds):
            for workers in (1, 2):
                out = folder / f"out-{workers}.jsonl"
                seconds, cpu, _, processes = _run_sampled(
                    [*_events_args(out), "--shards", str(SHARDS), "--workers", str(workers), *rates], env
                )
                digests.add(_sha256(out))
                results[workers].append(
                    {
                        "seconds": seconds,
                        "rows_per_s": rows / seconds,
                        "cpu_us_per_page": cpu / pages * 1e6,
                        "processes": processes,
                    }
                )
                out.unlink()
        best = {w: max(r, key=lambda x: x["rows_per_s"]) for w, r in results.items()}
        ratios = [
            two["rows_per_s"] / one["rows_per_s"] for one, two in zip(results[1], results[2], strict=True)
        ]
        dask = _dask(base_url, folder, rows, pages)
        return {
            "rows": rows,
            "pages": pages,
            "rounds": results,
            "best": best,
            "ratio_best": best[2]["rows_per_s"] / best[1]["rows_per_s"],
            "ratio_per_round": ratios,
            "identical_outputs": len(digests) == 1,
            "dask": {**dask, "identical_to_cli": dask.get("sha256") in digests},
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dask(base_url: str, folder: Path, rows: int, pages: int) -> dict[str, Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return {"skipped": "the dask extra is not installed"}
    os.environ.update({"AMPERITY_CLIENT_ID": "bench", "AMPERITY_CLIENT_SECRET": "bench-secret-0000"})
    op = EVENTS_OPERATION
    assert op is not None
    connection = Connection("acme", base_url)
    params = {"happened_from": WINDOW.start, "happened_to": WINDOW.end, "limit": PER_PAGE}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster) as dask,  # type: ignore[no-untyped-call]
    ):
        pids = list(dask.run(os.getpid).values())
        cpu = sum(_proc_cpu(pid) for pid in pids) + time.process_time()
        started = time.perf_counter()
        out = folder / "dask.jsonl"
        with ListJob.begin(connection, op, out, shards=SHARDS, params=params, overwrite=True) as job:
            report = run_on_dask(dask, job.specs, OwnBudget(Rates(UNLIMITED, UNLIMITED)))
            job.finish(sum(s.pages for s in report.stats))
        seconds = time.perf_counter() - started
        cpu = sum(_proc_cpu(pid) for pid in pids) + time.process_time() - cpu
    return {
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "cpu_us_per_page": cpu / pages * 1e6,
        "sha256": _sha256(out),
    }


def fidelity(folder: Path, quick: bool) -> dict[str, Any]:
    """The local budget against the fake tenant's strict sliding one-second windows."""
    figures: dict[str, Any] = {}
    rows = 1000 if quick else 3000
    with start_in_thread(FakeTenantConfig(rows=rows, seed=8)) as tenant:
        env = _env(tenant.base_url, tenant.client_id, tenant.client_secret, tenant.config.tenant)
        seconds, _, _ = _run(
            [*_events_args(folder / "events.jsonl", limit=10), "--workers", "4", "--shards", "8"], env
        )
        requests = tenant.stats["by_operation"].get("list-events", 0)
        figures["control_plane"] = {
            "workers": 4,
            "requests": requests,
            "seconds": seconds,
            "rate": requests / seconds,
            "of_limit": requests / seconds / 10,
            "429s": tenant.stats["rate_limited"],
        }
    # Enough index files at once that the budget, not one list's round trips, sets the pace.
    profile_rate = 200
    config = FakeTenantConfig(
        rows=50, indexes=16, profiles_per_index=500 if quick else 1500, profile_rate=profile_rate, seed=8
    )
    with start_in_thread(config) as tenant:
        env = _env(tenant.base_url, tenant.client_id, tenant.client_secret, tenant.config.tenant)
        args = [
            "extract-all",
            "--out",
            str(folder / "all"),
            "--limit",
            "10",
            "--workers",
            "2",
            "--profile-rate",
            str(profile_rate),
        ]
        seconds, _, _ = _run(args, env)
        requests = tenant.stats["by_operation"].get("list-profiles", 0)
        figures["profile"] = {
            "workers": 2,
            "limit": profile_rate,
            "requests": requests,
            "seconds": seconds,
            "rate": requests / seconds,
            "of_limit": requests / seconds / profile_rate,
            "429s": tenant.stats["rate_limited"],
        }
    return figures


def compile_package() -> None:
    """Byte-compile the package as installing a wheel does: an editable install leaves that to
    the first import, and with ``PYTHONDONTWRITEBYTECODE`` set every process (each worker) would
    compile the modules it imports again, a start-up cost no installed package has."""
    import amperity_async
    import amperity_async.custom

    for package in (amperity_async, amperity_async.custom):
        assert package.__file__ is not None
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def measure(quick: bool = False, scratch_parent: Path | None = None) -> dict[str, Any]:
    """``scratch_parent``: where outputs go (default: the system's temporary folder, on disk;
    ``/dev/shm`` takes the disk out of the figures)."""
    compile_package()
    with tempfile.TemporaryDirectory(prefix="bench-workers-", dir=scratch_parent) as scratch:
        folder = Path(scratch)
        started = datetime.now(UTC)
        load_before = os.getloadavg()
        figures = {
            "started": started.isoformat(),
            "cpus": os.cpu_count(),
            "scratch": str(folder.parent),
            "scaling": scaling(
                folder / "static", rounds=2 if quick else 3, pages_per_shard=1500 if quick else 8000
            ),
            "fidelity": fidelity(folder, quick),
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "took": str(timedelta(seconds=round((datetime.now(UTC) - started).total_seconds()))),
        }
    return figures


def markdown(figures: dict[str, Any]) -> str:
    lines = ["| measurement | result |", "|---|---|"]
    scale = figures["scaling"]
    if "skipped" in scale:
        lines.append(f"| `--workers` scaling | skipped: {scale['skipped']} |")
    else:
        one, two = scale["best"][1], scale["best"][2]
        lines += [
            f"| CLI `extract --workers 1` / `--workers 2` ({scale['rows']:,} rows, {SHARDS} shards, "
            f"static pages), rows/s (best of {len(scale['rounds'][1])}) "
            f"| {one['rows_per_s']:,.0f} / {two['rows_per_s']:,.0f}: {scale['ratio_best']:.2f}x "
            f"(per round: {', '.join(f'{r:.2f}' for r in scale['ratio_per_round'])}) |",
            f"| client CPU per page, all processes: 1 / 2 workers "
            f"| {one['cpu_us_per_page']:,.0f} / {two['cpu_us_per_page']:,.0f} µs |",
            f"| outputs identical across runs and worker counts | {scale['identical_outputs']} |",
        ]
        timeline = _timeline(two, scale["pages"])
        if timeline:
            lines.append(f"| `--workers 2`, best round: where the time and CPU went | {timeline} |")
        dask = scale["dask"]
        if "skipped" in dask:
            lines.append(f"| Dask LocalCluster | skipped: {dask['skipped']} |")
        else:
            lines.append(
                f"| Dask LocalCluster, 2 worker processes (`run_on_dask`), same pages "
                f"| {dask['rows_per_s']:,.0f} rows/s, "
                f"{dask['cpu_us_per_page']:,.0f} µs CPU per page, "
                f"output identical to the CLI's: {dask['identical_to_cli']} |"
            )
    for name, what in (("control_plane", "control plane, 10/s"), ("profile", "Profile API")):
        f = figures["fidelity"][name]
        limit = f.get("limit", 10)
        lines.append(
            f"| local shared budget, {what} at {limit}/s, {f['workers']} workers "
            "vs the tenant's strict window "
            f"| {f['requests']} requests in {f['seconds']:.1f} s from process start: "
            f"{f['of_limit']:.3f} of the limit, {f['429s']} x 429 |"
        )
    before, after = figures["load_average"]["before"], figures["load_average"]["after"]
    lines.append(
        f"| load average (1 min) before / after "
        f"| {before[0]:.2f} / {after[0]:.2f} on {figures['cpus']} CPUs |"
    )
    return "\n".join(lines)


def _timeline(run: dict[str, Any], pages: int) -> str | None:
    """The workers' span, the parent's alone before and after it, and the CPU of each process."""
    processes = run.get("processes") or {}
    workers = processes.get("workers") or []
    if not workers or processes.get("parent_cpu") is None:
        return None
    per_worker = pages / len(workers)
    cpus = " / ".join(f"{w['cpu'] / per_worker * 1e6:,.0f}" for w in workers)
    return (
        f"workers together {processes['workers_overlap']:.2f} of {run['seconds']:.2f} s (started after "
        f"{processes['before_workers']:.2f} s; parent alone {processes['after_workers']:.2f} s after them: "
        f"merge and exit); CPU per page of each worker {cpus} µs, parent {processes['parent_cpu']:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller lists, fewer rounds")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="folder for the outputs (default: the temporary folder; /dev/shm: no disk)",
    )
    args = parser.parse_args()
    figures = measure(args.quick, args.scratch)
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
