"""What each subcommand does. Each returns its exit status or raises; ``main`` reports failures."""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path

import anyio

from ..client import AmperityClient
from ..extract import (
    Connection,
    Durability,
    ExtractStats,
    FolderJob,
    ListJob,
    Manifest,
    Plan,
    Resumption,
    extract_all,
    extract_plan,
    extract_sharded,
    extract_to_stream,
    parse_timestamp,
)
from ..extract.everything import MANIFEST_NAME
from ..extract.processes import WorkerSetup, run_in_processes
from ..extract.specs import combined
from ..extract.windows import window_names
from ..operations import REGISTRY, OperationInfo
from ..tokens import ClientCredentials
from .connection import budget_from, open_client, worker_budgets, worker_env
from .failures import UsageError
from .params import decode_arguments
from .progress import Progress, summary_table


def operation_from(name: str) -> OperationInfo:
    op = REGISTRY.get(name) or REGISTRY.get(name.replace("-", "_"))
    lists = ", ".join(sorted(o.name for o in REGISTRY.list_operations()))
    if op is None:
        raise UsageError(f"unknown operation {name!r}; list operations: {lists}")
    if not op.returns_list:
        raise UsageError(f"{op.name} is not a list operation; extract works on: {lists}")
    return op


def key_values(pairs: Sequence[str], flag: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes key=value, got {pair!r}")
        result.append((key, value))
    return result


def _plan(op: OperationInfo, args: argparse.Namespace) -> Plan:
    pairs = key_values(args.param, "--param")
    if args.limit is not None:
        if "limit" not in op.query:
            raise UsageError(
                f"--limit: {op.name} takes no page size (it answers each time window in one response)"
            )
        pairs.append(("limit", str(args.limit)))
    arguments = decode_arguments(op, pairs)
    missing = [name for name in op.required_query if name not in arguments.params]
    if missing:
        most = (
            f" (at most {op.max_window_days} days apart; a longer window is split)"
            if op.max_window_days
            else ""
        )
        raise UsageError(f"{op.name} requires " + " ".join(f"--param {name}=..." for name in missing) + most)
    return Plan.build(op, arguments.positional, arguments.params, args.max_items)


def _splittable(op: OperationInfo, plan: Plan) -> bool:
    """Whether the list has a time window given in full, which shards split."""
    names = window_names(op, plan.params)
    return names is not None and all(name in plan.params for name in names)


async def cmd_extract(args: argparse.Namespace) -> int:
    op = operation_from(args.operation)
    to_stdout = args.out == "-"
    shards = args.shards or 1
    if to_stdout and (args.resume or args.overwrite or shards > 1 or args.workers > 1):
        raise UsageError(
            "--resume, --overwrite, --shards and --workers need --out FILE (a checkpoint is kept beside it)"
        )
    if (shards > 1 or args.workers > 1) and args.max_items is not None:
        raise UsageError("--max-items cannot be combined with --shards or --workers")
    out = Path(args.out)
    if not to_stdout and out.is_dir():
        raise UsageError(f"--out {out} is a folder; extract writes one file (extract-all writes a folder)")
    plan = _plan(op, args)
    if args.workers > 1:
        if _splittable(op, plan):
            return await _extract_in_workers(args, op, plan, out, shards=args.shards or args.workers)
        names = window_names(op, plan.params)
        how = (
            f"give --param {names[0]}=... and --param {names[1]}=... to split it"
            if names
            else "nothing splits it"
        )
        warnings.warn(
            f"{op.name} has no time window to split into shards ({how}); one worker reads it",
            UserWarning,
            stacklevel=1,
        )
    async with open_client(args, budget_from(args)) as client:
        progress = Progress(lambda: client.stats)
        if to_stdout:
            await extract_to_stream(client, plan, sys.stdout.buffer, on_page=progress.tracker())
            progress.finish()
            return 0
        if shards > 1:
            stats = await extract_sharded(
                client,
                op,
                out,
                shards=shards,
                args=plan.args,
                params=plan.params,
                resume=args.resume,
                overwrite=args.overwrite,
                durability=_durability(args),
                on_page=progress.tracker(),
            )
        else:
            how_ = Resumption(resume=args.resume, overwrite=args.overwrite, durability=_durability(args))
            stats = await extract_plan(client, plan, out, how_, on_page=progress.tracker())
        progress.finish()
        print(summary_table([stats], client.stats), file=sys.stderr)
    return 0


def _durability(args: argparse.Namespace) -> Durability:
    """``--sync-pages``/``--sync-seconds``: for the output, or for each shard when there are several."""
    return Durability(pages=args.sync_pages, seconds=args.sync_seconds)


async def _extract_in_workers(
    args: argparse.Namespace, op: OperationInfo, plan: Plan, out: Path, *, shards: int
) -> int:
    """One list's window split into ``shards``, read by ``--workers`` processes on one budget,
    merged into ``out`` by this process, which holds it locked meanwhile."""
    async with worker_budgets(args) as (own, theirs), open_client(args, own) as client:
        connection = Connection.of(client, max_retries=args.max_retries)
        begin = functools.partial(
            ListJob.begin,
            connection,
            op,
            out,
            shards=shards,
            params=plan.params,
            args=plan.args,
            resume=args.resume,
            overwrite=args.overwrite,
            durability=_durability(args),
        )
        with anyio.CancelScope(shield=True):  # a cancel now would drop the opened, locked output unclosed
            job = await anyio.to_thread.run_sync(begin)
        with job:
            progress = Progress()
            setup = WorkerSetup(theirs, worker_env(args), tracebacks=args.debug)
            report = await run_in_processes(
                job.specs, workers=args.workers, setup=setup, on_page=progress.tracker()
            )
            merged = await anyio.to_thread.run_sync(job.finish, sum(s.pages for s in report.stats))
            stats = ExtractStats(
                operation=op.name,
                target=str(out),
                rows=merged.rows,
                pages=merged.pages,
                started=progress.started,
                finished=time.monotonic(),
                resumed=not job.specs,
            )
        progress.finish()
        print(summary_table([stats], combined([client.stats, report.requests])), file=sys.stderr)
    return 0


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    start = parse_timestamp(args.window_from, "--from") if args.window_from else None
    end = parse_timestamp(args.window_to, "--to") if args.window_to else None
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--from {args.window_from} must be before --to {args.window_to}")
    return start, end


async def cmd_extract_all(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; extract-all writes a folder of files")
    start, end = _window(args)
    if args.workers == 1:
        async with open_client(args, budget_from(args)) as client:
            progress = Progress(lambda: client.stats)
            results = await extract_all(
                client,
                out,
                resume=args.resume,
                overwrite=args.overwrite,
                window=(start, end),
                on_page=progress.tracker(),
                limit=args.limit,
            )
            progress.finish()
            print(summary_table(results, client.stats))
        return 0
    async with worker_budgets(args) as (own, theirs), open_client(args, own) as client:
        job = await FolderJob.begin(
            client,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            window=(start, end),
            limit=args.limit,
            connection=Connection.of(client, max_retries=args.max_retries),
        )
        async with job:
            progress = Progress()
            setup = WorkerSetup(theirs, worker_env(args), tracebacks=args.debug)
            report = await run_in_processes(
                job.specs, workers=args.workers, setup=setup, on_page=progress.tracker()
            )
            await job.finish()
        progress.finish()
        results = sorted(report.stats, key=lambda s: s.target)
        print(summary_table(results, combined([client.stats, report.requests])))
    return 0


async def cmd_fake_tenant(args: argparse.Namespace) -> int:
    from amperity_async.testing.cli import run_from_args

    try:
        await run_from_args(args)
    except OverflowError as exc:  # the socket layer's word for a port number out of range
        raise UsageError(f"fake-tenant: {exc}") from exc
    return 0


def _demo_may_replace(out: Path) -> bool:
    """A demo replaces only an earlier demo's output, never a folder holding anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file; the demo writes a folder of files")
    manifest = Manifest.load(out)
    if manifest is not None and manifest.kind == "demo":
        return True
    if manifest is not None or any(p.name != MANIFEST_NAME for p in out.iterdir()):
        raise UsageError(f"--out {out} holds other files than an earlier demo's; choose another folder")
    return False


async def cmd_demo(args: argparse.Namespace) -> int:
    """The main job end to end: a fake tenant with the real limits, extract-all, a summary table."""
    from amperity_async.testing import FakeTenant, FakeTenantConfig

    out = Path(args.out)
    replace = _demo_may_replace(out)
    config = FakeTenantConfig(
        rows=args.rows, indexes=args.indexes, profiles_per_index=args.profiles, seed=args.seed
    )
    async with FakeTenant(config) as tenant:
        print(
            f"fake tenant {config.tenant!r} at {tenant.base_url} "
            "(10 requests/s control plane, 2000/s profiles)",
            file=sys.stderr,
        )
        auth = ClientCredentials(config.client_id, config.client_secret)
        async with AmperityClient(tenant=config.tenant, auth=auth, base_url=tenant.base_url) as client:
            progress = Progress(lambda: client.stats)
            results = await extract_all(
                client, out, overwrite=replace, kind="demo", on_page=progress.tracker(), limit=args.limit
            )
            progress.finish()
            print(summary_table(results, client.stats))
            print(
                f"\n{sum(r.rows for r in results):,} rows in {len(results)} files under {out}/ "
                f"({client.refresher.fetch_count} token request(s))"
            )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "extract": cmd_extract,
    "extract-all": cmd_extract_all,
    "fake-tenant": cmd_fake_tenant,
    "demo": cmd_demo,
}
