"""The side-by-side table, harness side: every cell measured in interleaved rounds, medians kept.

A cell is one client variant reading one kind of page at one concurrency, or the CLI extracting
profiles to one sink. Library cells run in long-lived workers (one per variant, on the client CPU)
that measure a round when asked; CLI cells start the command afresh each round. Each round visits
every cell once, in a new shuffled order, so that whatever else the machine is doing spreads over
all cells alike; the table shows the median round and the range.

Client CPU per page (this process's CPU time over the pages it read) is the headline: unlike
pages/s it hardly moves when other work shares the machine.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chains import KINDS, PROFILE, Chain, StaticLists
from .cli import SINK_LABELS, SINKS, run_extract, steady
from .processes import BenchmarkError, LineReader, spawn_worker, stop_process, tail
from .profiling import profile_workers
from .settings import SEED, Settings
from .variants import BASELINE, TIMED, VARIANT_LABELS, VARIANTS

READY_TIMEOUT = 120.0
ROUND_GRACE = 60.0


# A CLI cell is a short run: its output is read often enough to be marked many times (a few small
# reads of /proc each time, by the harness on the server CPU).
CLI_CELL_SAMPLES = 0.005


def cli_cell_rows(settings: Settings) -> int:
    """The rows of the profile list each CLI cell reads to its end (the first rows of the big one)."""
    return min(settings.cli_cell_rows, settings.profile_rows)


class CellWorker:
    """A long-lived worker process measuring one variant, round by round."""

    def __init__(
        self, variant: str, spec: dict[str, Any], cpus: frozenset[int] | None, scratch: Path
    ) -> None:
        self.variant = variant
        self.stderr_path = scratch / f"cell-{variant}.stderr"
        self.proc = spawn_worker(
            ["--cell-worker", json.dumps(spec | {"variant": variant})], cpus, self.stderr_path, stdin=True
        )
        assert self.proc.stdout is not None
        self.lines = LineReader(self.proc.stdout, f"the {variant} worker")

    def _message(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.readline(timeout)
        except BenchmarkError as exc:
            raise BenchmarkError(f"{exc}:\n{tail(self.stderr_path)}") from None
        if line is None:
            raise BenchmarkError(f"the {self.variant} worker exited:\n{tail(self.stderr_path)}")
        message: dict[str, Any] = json.loads(line)
        return message

    def wait_ready(self) -> None:
        message = self._message(READY_TIMEOUT)
        if message.get("event") != "ready":
            raise BenchmarkError(f"the {self.variant} worker did not start: {message}")

    def measure(
        self, request: dict[str, Any], on_timed: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """One round; ``on_timed(pid)`` is called when the timed window starts (after the warm-up)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        timeout = float(request["warmup"]) + float(request["seconds"]) + ROUND_GRACE
        while True:
            message = self._message(timeout)
            event = message.pop("event", None)
            if event == TIMED:
                if on_timed is not None:
                    on_timed(self.proc.pid)
            elif event == "result":
                return message
            else:
                cell = f"{self.variant} on a {request['kind']} page with {request['tasks']} tasks"
                raise BenchmarkError(f"{cell} failed:\n{message.get('error', message)}")

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()  # end of input: the worker closes its clients and exits
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        self.lines.close()


@dataclass
class Cell:
    """One row-and-column of the table and its rounds."""

    variant: str
    label: str
    kind: str
    tasks: int | None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        per_page = [1e6 * r["cpu_seconds"] / r["pages"] for r in self.rounds]
        # A CLI cell's seconds are a difference of two runs: noise can leave nothing to divide by.
        rates = [r["pages"] / r["seconds"] for r in self.rounds if r["seconds"] > 0]
        server = [
            r["server_cpu_seconds"] / r["seconds"]
            for r in self.rounds
            if r.get("server_cpu_seconds") is not None
        ]
        return {
            "variant": self.variant,
            "label": self.label,
            "kind": self.kind,
            "tasks": self.tasks,
            "cpu_us_per_page": statistics.median(per_page),
            "cpu_us_per_page_range": [min(per_page), max(per_page)],
            "pages_per_s": statistics.median(rates) if rates else None,
            "pages_per_s_range": [min(rates), max(rates)] if rates else None,
            "client_cpu_share": statistics.median(r["cpu_seconds"] / r["seconds"] for r in self.rounds),
            "server_cpu_share_max": max(server) if server else None,
            "peak_rss_mb": max((r["peak_rss_mb"] for r in self.rounds if "peak_rss_mb" in r), default=None),
            "rounds": self.rounds,
        }


@dataclass(frozen=True)
class StaticTarget:
    """Where the static pages are served, and what lists they hold."""

    base_url: str
    server_pid: int
    lists: StaticLists
    naive: dict[str, str] | None
    """Folders of the naive generated packages (None: that variant is skipped)."""


CellKey = tuple[str, str, int | None]
"""(variant, page kind, tasks); tasks is None for the CLI, which runs as it does for users."""


def _library_jobs(
    workers: dict[str, CellWorker], settings: Settings, target: StaticTarget, cells: dict[CellKey, Cell]
) -> list[Callable[[], None]]:
    jobs: list[Callable[[], None]] = []
    for variant, worker in workers.items():
        for kind in KINDS:
            for tasks in settings.tasks:
                cell = cells.setdefault(
                    (variant, kind.name, tasks), Cell(variant, VARIANT_LABELS[variant], kind.name, tasks)
                )
                request = {
                    "kind": kind.name,
                    "tasks": tasks,
                    "warmup": settings.warmup_seconds,
                    "seconds": settings.cell_seconds,
                    "server_pid": target.server_pid,
                }

                def job(
                    worker: CellWorker = worker, request: dict[str, Any] = request, cell: Cell = cell
                ) -> None:
                    cell.rounds.append(worker.measure(request))

                jobs.append(job)
    return jobs


class CliCell:
    """The CLI extracting the whole of a profile list to one sink, once per round; the round's figure
    is its steady work between its first and last output marks (start-up, imports, the token, the
    first page and closing down do not count)."""

    def __init__(
        self, sink: str, chain: Chain, target: StaticTarget, cpus: frozenset[int] | None, scratch: Path
    ) -> None:
        self.cell = Cell(f"cli-{sink}", SINK_LABELS[sink], PROFILE.name, None)
        self.sink, self.chain, self.target, self.cpus, self.scratch = sink, chain, target, cpus, scratch

    def run(self) -> None:
        run = run_extract(
            base_url=self.target.base_url,
            kind=PROFILE,
            chain=self.chain,
            sink=self.sink,
            scratch=self.scratch,
            cpus=self.cpus,
            sample_every=CLI_CELL_SAMPLES,
        )
        self.cell.rounds.append(steady(run) | {"peak_rss_mb": run.usage.peak_rss_mb})


def measure_cells(
    settings: Settings,
    target: StaticTarget,
    cpus: frozenset[int] | None,
    scratch: Path,
    *,
    profile_dir: Path | None = None,
    on_progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every cell, ``settings.rounds`` interleaved rounds; summaries and ratios to the baseline.
    With ``profile_dir``, one more round of some variants is sampled with py-spy (not counted)."""
    variants = [v for v in VARIANTS if v != "naive" or target.naive is not None]
    spec = {
        "base_url": target.base_url,
        "index_id": target.lists.profile.list_id,
        "naive": target.naive,
    }
    cells: dict[CellKey, Cell] = {}
    workers: dict[str, CellWorker] = {}
    profile: dict[str, Any] | None = None
    try:
        for variant in variants:
            workers[variant] = CellWorker(variant, spec, cpus, scratch)
        for worker in workers.values():
            worker.wait_ready()
        jobs = _library_jobs(workers, settings, target, cells)
        chain = target.lists.profile_heads[cli_cell_rows(settings)]
        for sink in SINKS:
            cli = CliCell(sink, chain, target, cpus, scratch / "cli")
            cells[(cli.cell.variant, PROFILE.name, None)] = cli.cell
            jobs.append(cli.run)
        order = random.Random(SEED)  # the same orders run to run
        for number in range(settings.rounds):
            on_progress(f"round {number + 1} of {settings.rounds}")
            order.shuffle(jobs)
            for job in jobs:
                job()
        if profile_dir is not None:
            on_progress("profile")
            profile_dir.mkdir(parents=True, exist_ok=True)
            request = {
                "kind": PROFILE.name,
                "tasks": max(settings.tasks),
                "warmup": settings.warmup_seconds,
                "seconds": max(2.0, 2 * settings.cell_seconds),
            }
            profile = profile_workers(workers, request, profile_dir)
    finally:
        for worker in workers.values():
            worker.stop()
    summaries = [cell.summary() for cell in cells.values()]
    add_ratios(summaries)
    return {
        "cells": summaries,
        "variants": variants,
        "rounds": settings.rounds,
        "seconds_per_round": settings.cell_seconds,
        "tasks": list(settings.tasks),
        "cli_rows_per_round": cli_cell_rows(settings),
        "profile": profile,
    }


def add_ratios(summaries: list[dict[str, Any]]) -> None:
    """Each cell's CPU per page over the raw aiohttp + JSON baseline's, per page kind (and tasks;
    the CLI is compared with the baseline at the highest concurrency)."""
    baselines = {(s["kind"], s["tasks"]): s["cpu_us_per_page"] for s in summaries if s["variant"] == BASELINE}
    for s in summaries:
        tasks = (
            s["tasks"]
            if s["tasks"] is not None
            else max((t for k, t in baselines if k == s["kind"]), default=None)
        )
        base = baselines.get((s["kind"], tasks))
        s["cpu_vs_baseline"] = s["cpu_us_per_page"] / base if base else None
