"""Several worker processes: ``amperity-async extract ... --workers N`` scaling and the shared
budget's fidelity, measured by ``benchmarks/workers.py`` (its own nginx, static pages and fake
tenants) in a process of its own, so that its children never share the harness's pinned CPUs.

``workers_scaling`` returns what ``report.scaling_markdown`` prints: one row per figure, plus
``speedup_2_workers`` for the target table. The smoke run leaves it out (it takes minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cells import StaticTarget
from .processes import CpuPlan
from .settings import Settings

WORKERS_SCRIPT = Path(__file__).resolve().parent.parent / "workers.py"
NOT_MEASURED = "not measured in a smoke run"


def workers_scaling(
    settings: Settings, cpus: CpuPlan, scratch: Path, static: StaticTarget | None
) -> dict[str, Any]:
    if settings.mode == "smoke":
        return {"status": NOT_MEASURED, "planned": [f"python {WORKERS_SCRIPT.name} measures it"]}
    figures_path = scratch / "workers.json"
    command = [sys.executable, str(WORKERS_SCRIPT), "--json", str(figures_path)]
    if settings.mode == "quick":
        command.append("--quick")
    with _unpinned(cpus.every):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"benchmarks/workers.py failed ({result.returncode}): {tail[0]}"}
    return summary(json.loads(figures_path.read_text(encoding="utf-8")))


@contextmanager
def _unpinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """The harness pinned itself to the servers' CPU, which a child inherits: the workers get
    every CPU for the child's start, or two of them would share one."""
    if cpus is None:
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The rows of the report from ``workers.py``'s figures."""
    rows: dict[str, Any] = {}
    scale = figures["scaling"]
    if "skipped" in scale:
        rows["--workers scaling"] = f"skipped: {scale['skipped']}"
    else:
        one, two = scale["best"]["1"], scale["best"]["2"]
        rows["extract --workers 1 / 2, rows/s (best round)"] = (
            f"{one['rows_per_s']:,.0f} / {two['rows_per_s']:,.0f}: {scale['ratio_best']:.2f}x "
            f"(per round: {', '.join(f'{r:.2f}' for r in scale['ratio_per_round'])})"
        )
        rows["client CPU per page, 1 / 2 workers"] = (
            f"{one['cpu_us_per_page']:,.0f} / {two['cpu_us_per_page']:,.0f} µs"
        )
        rows["outputs identical"] = scale["identical_outputs"]
        rows["speedup_2_workers"] = scale["ratio_best"]
        dask = scale["dask"]
        rows["Dask LocalCluster, 2 worker processes"] = (
            f"skipped: {dask['skipped']}"
            if "skipped" in dask
            else f"{dask['rows_per_s']:,.0f} rows/s, identical to the CLI's: {dask['identical_to_cli']}"
        )
    for name, fidelity in figures["fidelity"].items():
        rows[f"local shared budget, {name}"] = (
            f"{fidelity['of_limit']:.3f} of {fidelity.get('limit', 10)}/s, {fidelity['429s']} x 429"
        )
    before, after = figures["load_average"]["before"], figures["load_average"]["after"]
    rows["load average before / after (workers)"] = f"{before[0]:.2f} / {after[0]:.2f}"
    return rows
