"""The ``amperity-async extract`` command as a user runs it: one process, its CPU time and memory as
the kernel counted them, and its output checked row by row against the list it read.

Written to a file (``--out FILE``) or to stdout (``--out -``, read here through a pipe as ``| gzip``
would). A lost or doubled row must never pass for speed, so every run reads a whole list to its end and
the item ids of its output are compared with the list's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .chains import Chain, IdDigest, PageKind
from .processes import BenchmarkError, ChildUsage, pin, tail, watch_child
from .settings import CLIENT_ID, CLIENT_SECRET, PAGE_SIZE, ROOT, TENANT

SINKS = ("file", "stdout")
SINK_LABELS = {"file": "CLI extract to a file", "stdout": "CLI extract to stdout (a pipe)"}


def cli_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m amperity_async``."""
    script = Path(sys.executable).with_name("amperity-async")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "amperity_async"]


@dataclass(frozen=True)
class CliRun:
    """One finished extraction whose output held exactly the list's rows."""

    sink: str
    rows: int
    usage: ChildUsage
    steady: dict[str, float] | None = None
    """Its work between its first and last output marks (None: fewer than two): pages, seconds, CPU
    seconds. Start-up, imports, the token and the first page come before; closing down after."""

    @property
    def pages(self) -> int:
        return -(-self.rows // PAGE_SIZE)

    def summary(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "rows": self.rows,
            "pages": self.pages,
            "wall_seconds": self.usage.wall_seconds,
            "cpu_seconds": self.usage.cpu_seconds,
            "peak_rss_mb": self.usage.peak_rss_mb,
            "ids_checked": True,
        }


def run_extract(
    *,
    base_url: str,
    kind: PageKind,
    chain: Chain,
    sink: str,
    scratch: Path,
    cpus: frozenset[int] | None,
    sample_every: float = 0.1,
    timeout: float = 1800,
) -> CliRun:
    """Extract the whole list ``chain`` to ``sink``; BenchmarkError unless the output holds each of
    its rows exactly once."""
    scratch.mkdir(parents=True, exist_ok=True)
    stamp = time.monotonic_ns()
    output = scratch / f"{kind.name}-{sink}-{stamp}.jsonl"
    stderr_path = scratch / f"{kind.name}-{sink}-{stamp}.stderr"
    command = [*cli_command(), "extract", kind.operation, "--limit", str(PAGE_SIZE)]
    command += ["--param", f"id={chain.list_id}"] if kind.takes_index else []
    command += ["--out", str(output) if sink == "file" else "-"]
    command += ["--tenant", TENANT, "--base-url", base_url]
    command += ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    # The user's own AMPERITY_* settings (a Redis budget, another tenant) must not leak into the run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPERITY_")}
    with stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if sink == "stdout" else subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env=env,
        )
    pin(proc.pid, cpus)
    try:
        if sink == "stdout":
            assert proc.stdout is not None
            with output.open("wb") as copy:
                usage = watch_child(
                    proc, started, timeout=timeout, sample_every=sample_every, drain=proc.stdout, sink=copy
                )
            proc.stdout.close()
        else:
            usage = watch_child(proc, started, timeout=timeout, sample_every=sample_every, output_file=output)
        if usage.returncode != 0:
            raise BenchmarkError(
                f"`{' '.join(command)}` failed (exit {usage.returncode}):\n{tail(stderr_path)}"
            )
        found = output_ids(output)
        steady = steady_work(usage, output)
    finally:
        output.unlink(missing_ok=True)
    if found.count != chain.rows or found.value != chain.ids_digest:
        raise BenchmarkError(
            f"`{' '.join(command)}` wrote {found.count} rows where the list has {chain.rows}"
            + ("" if found.count != chain.rows else ", but not the list's: some missing, some doubled")
        )
    return CliRun(sink=sink, rows=found.count, usage=usage, steady=steady)


def steady_work(usage: ChildUsage, output: Path) -> dict[str, float] | None:
    """Pages, seconds and CPU seconds between the first and the last mark of the output: rows and
    CPU read at the same moments, so their ratio holds however the moments fall."""
    if len(usage.output_marks) < 2:
        return None
    first, last = usage.output_marks[0], usage.output_marks[-1]
    with output.open("rb") as rows:
        done = rows.read(first.output_bytes).count(b"\n")
        more = rows.read(last.output_bytes - first.output_bytes).count(b"\n")
    return {
        "pages": more / PAGE_SIZE,
        "seconds": last.seconds - first.seconds,
        "cpu_seconds": last.cpu_seconds - first.cpu_seconds,
        "rows_before": done,
    }


def output_ids(path: Path) -> IdDigest:
    """The ids of an extraction's output, one JSON item per line."""
    digest = IdDigest()
    with path.open("rb") as lines:
        for line in lines:
            digest.add(orjson.loads(line)["id"])
    return digest


def rss_profile(samples: list[tuple[float, float]]) -> dict[str, float | None]:
    """Steady memory (median of the second half of the run) and its drift (the last quarter's median
    less the second quarter's): a flat extraction drifts by about nothing."""
    values = [mb for _, mb in samples]
    if len(values) < 8:
        return {"steady_mb": statistics.median(values) if values else None, "drift_mb": None}
    quarter = len(values) // 4
    return {
        "steady_mb": statistics.median(values[len(values) // 2 :]),
        "drift_mb": statistics.median(values[3 * quarter :])
        - statistics.median(values[quarter : 2 * quarter]),
    }


def steady(run: CliRun) -> dict[str, float]:
    """A run's steady work (see ``CliRun.steady``); BenchmarkError when it was too short to have any."""
    if run.steady is None or run.steady["pages"] <= 0 or run.steady["seconds"] <= 0:
        raise BenchmarkError(
            f"the {run.sink} extraction of {run.rows} rows was over before its output could be timed twice"
        )
    return run.steady


def large_extraction(
    *, base_url: str, kind: PageKind, chain: Chain, scratch: Path, cpus: frozenset[int] | None
) -> dict[str, Any]:
    """The whole list, to a file and to stdout: rows/s from process start to exit, CPU, memory."""
    runs = {}
    for sink in SINKS:
        run = run_extract(base_url=base_url, kind=kind, chain=chain, sink=sink, scratch=scratch, cpus=cpus)
        # A short list may be over before its output is read twice: then it has no steady figures.
        work = run.steady if run.steady and run.steady["pages"] > 0 and run.steady["seconds"] > 0 else None
        runs[sink] = (
            run.summary()
            | rss_profile(run.usage.rss_samples)
            | {
                "rows_per_s": run.rows / run.usage.wall_seconds,
                "cpu_us_per_page": 1e6 * run.usage.cpu_seconds / run.pages,
                "steady_rows_per_s": None if work is None else work["pages"] * PAGE_SIZE / work["seconds"],
                "steady_cpu_us_per_page": None if work is None else 1e6 * work["cpu_seconds"] / work["pages"],
                "rss_samples": [(round(t, 2), round(mb, 1)) for t, mb in run.usage.rss_samples],
            }
        )
    return {"kind": kind.name, "rows": chain.rows, "pages": chain.pages, "runs": runs}
