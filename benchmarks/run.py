"""``make bench``: the client measured against a real fast server and against the fake tenant, in one run.

1. Client CPU per page, side by side: nginx serves static Amperity-shaped pages (a Segment list and
   a Profile list made from the fake tenant's data), so the server costs the client nothing, and
   every variant reads them in the same run: raw aiohttp (HTTP only, and + json.loads), raw httpx
   over httpx-aiohttp, httpx's default transport, a naive openapi-python-client client generated
   from the official documents, the project's ``call`` / ``pages`` / ``paginate`` and its CLI.
2. A large CLI extraction of the Profile list, to a file and to stdout: rows/s, CPU, peak and
   steady memory, every row checked.
3. Several workers: ``--workers`` 1 vs 2 scaling, Dask, the local shared budget's fidelity (run by
   ``benchmarks/workers.py``; left out of ``--smoke``).
4. Against the fake tenant: rate fidelity, token refresh under load, extraction under faults.

Servers run on one CPU and every measured client on the other (when there are two); the table
goes to stdout and, with every round, to benchmarks/results/latest.md and latest.json.

    python benchmarks/run.py [--quick | --smoke] [--profile] [--only SECTION] [--nginx PATH] [--tasks 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only what every process needs: a measured worker imports what its variant uses and no more
# (its memory is measured too).
from harness.processes import BenchmarkError, CpuPlan
from harness.settings import RESULTS_DIR, Settings

if TYPE_CHECKING:
    from harness.cells import StaticTarget

STATIC_SECTIONS = ("throughput", "large_extraction", "workers_scaling")
TENANT_SECTIONS = ("rate_fidelity", "token_refresh", "extraction")
SECTIONS = STATIC_SECTIONS + TENANT_SECTIONS


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tasks(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--tasks takes counts such as 50 or 1,10,50, not {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--tasks takes counts of at least 1, not {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="shorter runs (3 rounds, a 200,000-row extraction)"
    )
    mode.add_argument(
        "--smoke", action="store_true", help="the shortest runs on tiny lists (keeps it working)"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable)"
    )
    parser.add_argument("--profile", action="store_true", help="also sample some variants with py-spy")
    parser.add_argument("--nginx", help="the nginx binary (default: nginx on PATH or in /usr/sbin)")
    parser.add_argument("--tasks", type=_tasks, help="concurrent tasks per client cell (default: 50)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--cell-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _static_target(
    settings: Settings,
    args: argparse.Namespace,
    cpus: CpuPlan,
    scratch: Path,
    stack: ExitStack,
    record: dict[str, Any],
) -> StaticTarget | None:
    """Pages, the naive client and nginx; None (and why, in ``record``) when nginx is missing."""
    from harness import naive
    from harness.cells import StaticTarget, cli_cell_rows
    from harness.chains import generate_lists
    from harness.nginx import INSTALL_HINT, StaticServer, find_nginx, nginx_version

    binary = find_nginx(args.nginx)
    if binary is None:
        where = f"{args.nginx} does not exist" if args.nginx else "nginx not found"
        record["skipped"] = f"{where}; {INSTALL_HINT}"
        _progress(f"static-page cells skipped: {record['skipped']}")
        return None
    record["nginx"] = nginx_version(binary)
    began = time.perf_counter()
    _progress("generating the static pages from the fake tenant's data ...")
    lists = generate_lists(
        scratch / "pages",
        segment_rows=settings.segment_rows,
        profile_rows=settings.profile_rows,
        heads=(cli_cell_rows(settings),),
    )
    record["lists"] = asdict(lists)
    record["generation_seconds"] = time.perf_counter() - began
    try:
        naive_folders: dict[str, str] | None = naive.generate(scratch / "naive")
    except BenchmarkError as exc:
        naive_folders = None
        record["naive_error"] = str(exc)
        _progress(f"the naive generated client is left out: {exc}")
    server = stack.enter_context(StaticServer(binary, scratch / "pages", scratch / "nginx", cpus.server))
    return StaticTarget(base_url=server.base_url, server_pid=server.pid, lists=lists, naive=naive_folders)


def run_sections(settings: Settings, args: argparse.Namespace, results: dict[str, Any]) -> bool:
    """Every chosen section, each recorded (or its failure); True when all of them measured."""
    from harness import cli, scaling, tenant_sections
    from harness.cells import measure_cells
    from harness.chains import PROFILE

    tenant_runs: dict[str, Callable[[Settings, CpuPlan, Path], dict[str, Any]]] = {
        "rate_fidelity": tenant_sections.rate_fidelity,
        "token_refresh": tenant_sections.token_refresh,
        "extraction": tenant_sections.extraction_under_faults,
    }
    cpus = CpuPlan.detect()
    if cpus.server is not None:
        # The harness itself (page generation, reading the CLI's stdout) stays off the client CPU.
        os.sched_setaffinity(0, cpus.server)
    chosen = [name for name in SECTIONS if not args.only or name in args.only]
    scratch = Path(tempfile.mkdtemp(prefix="amperity-bench-"))
    all_measured = True
    try:
        with ExitStack() as stack:
            static: StaticTarget | None = None
            if any(name in STATIC_SECTIONS for name in chosen):
                results["static"] = {}
                static = _static_target(settings, args, cpus, scratch, stack, results["static"])

            def static_section(name: str) -> dict[str, Any]:
                if name == "workers_scaling":
                    return scaling.workers_scaling(settings, cpus, scratch, static)
                if static is None:
                    return {"skipped": results["static"]["skipped"]}
                if name == "throughput":
                    profile_dir = args.out if args.profile else None
                    return measure_cells(
                        settings,
                        static,
                        cpus.client,
                        scratch,
                        profile_dir=profile_dir,
                        on_progress=lambda m: _progress(f"  {m}"),
                    )
                return cli.large_extraction(
                    base_url=static.base_url,
                    kind=PROFILE,
                    chain=static.lists.profile,
                    scratch=scratch / "large",
                    cpus=cpus.client,
                )

            for name in chosen:
                load = [os.getloadavg()[0]]
                began = time.perf_counter()
                _progress(f"{name} ...")
                try:
                    if name in STATIC_SECTIONS:
                        results[name] = static_section(name)
                    else:
                        results[name] = tenant_runs[name](settings, cpus, scratch)
                except BenchmarkError as exc:
                    results[name] = {"error": str(exc)}
                    all_measured = False
                    _progress(f"{name} FAILED: {exc}")
                load.append(os.getloadavg()[0])
                results["machine"]["load_by_section"][name] = load
                _progress(f"{name} done in {time.perf_counter() - began:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return all_measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cell_worker:
        from harness.variants import serve_cells

        asyncio.run(serve_cells(json.loads(args.cell_worker)))
        return 0
    if args.worker:
        from harness import tenant_sections

        kind, spec = args.worker
        one_shot = {"rate": tenant_sections.rate_worker, "token": tenant_sections.token_worker}
        print(json.dumps(asyncio.run(one_shot[kind](json.loads(spec)))))
        return 0
    from harness import report

    settings = Settings.for_mode("smoke" if args.smoke else "quick" if args.quick else "full", args.tasks)
    cpus = CpuPlan.detect()
    command = "python benchmarks/run.py" + ("" if settings.mode == "full" else f" --{settings.mode}")
    command += " --profile" if args.profile else ""
    command += f" --tasks {','.join(map(str, args.tasks))}" if args.tasks else ""
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
            "server_cpus": sorted(cpus.server) if cpus.server else None,
            "client_cpus": sorted(cpus.client) if cpus.client else None,
            "load_by_section": {},
        },
    }
    all_measured = run_sections(settings, args, results)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = report.targets(results)
    stem = "latest" if not args.only else "only-" + "-".join(sorted(args.only))
    args.out.mkdir(parents=True, exist_ok=True)
    # The measurements are kept before anything else can go wrong with them.
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    return 0 if all_measured else 1


if __name__ == "__main__":
    sys.exit(main())
