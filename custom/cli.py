"""The ``amperity-async`` command: bulk extraction, the fake tenant, and the upstream spec watch.

Bad arguments, missing credentials and unknown operations print one line and exit with status 2;
errors from the API print one line and exit with status 1. Nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import anyio
import attrs

from .tokens import ClientCredentials, StaticToken, TokenSource
from .client import DEFAULT_BASE_URL, AmperityClient
from .errors import AmperityError, ConfigurationError
from .extract import (
    ExtractionError,
    ExtractStats,
    coerce_params,
    default_window,
    extract_sharded,
    extract_to_file,
    window_of,
)
from .operations import REGISTRY, OperationInfo

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Wrong or missing command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# progress and summary


@attrs.define
class Progress:
    """A one-line progress display on stderr (only on a terminal), refreshed at most twice a second."""

    client: AmperityClient
    stream: TextIO = sys.stderr
    started: float = attrs.field(factory=time.monotonic)
    _last: float = 0.0
    rows: int = 0
    pages: int = 0

    def update(self, rows: int, pages: int) -> None:
        self.rows, self.pages = rows, pages
        now = time.monotonic()
        if self.stream.isatty() and now - self._last >= 0.5:
            self._last = now
            self.stream.write("\r" + self.line() + " ")
            self.stream.flush()

    def line(self) -> str:
        stats = self.client.stats
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.rows:,} items, {self.pages:,} pages, {stats.requests / elapsed:,.1f} req/s, "
            f"{stats.retries} retries, {stats.rate_limited} 429s, {elapsed:,.1f}s"
        )

    def finish(self) -> None:
        if self.stream.isatty():
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()


def summary_table(rows: Sequence[ExtractStats], client: AmperityClient) -> str:
    """Per operation (its files added up): rows, pages, seconds, requests/s, retries, 429s."""
    header = ("operation", "files", "rows", "pages", "seconds", "req/s", "retries", "429s")
    grouped: dict[str, list[ExtractStats]] = {}
    for stat in rows:
        grouped.setdefault(stat.operation, []).append(stat)
    per_op = client.stats.by_operation
    lines = [header]
    for name, stats in sorted(grouped.items()):
        counters = per_op.get(name)
        requests = counters.requests if counters is not None else sum(s.pages for s in stats)
        seconds = max(max(s.seconds for s in stats), 1e-9)
        lines.append((
            name, str(len(stats)), f"{sum(s.rows for s in stats):,}", f"{sum(s.pages for s in stats):,}",
            f"{seconds:.2f}", f"{requests / seconds:.1f}",
            str(counters.retries if counters else 0), str(counters.rate_limited if counters else 0),
        ))
    total = client.stats
    wall = max((s.seconds for s in rows), default=0.0)
    lines.append((
        "total", str(len(rows)), f"{sum(s.rows for s in rows):,}", f"{sum(s.pages for s in rows):,}", f"{wall:.2f}",
        f"{total.requests / max(wall, 1e-9):.1f}", str(total.retries), str(total.rate_limited),
    ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for index, row in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0 or index == len(lines) - 2:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# client set-up from flags and environment


def _env(args: argparse.Namespace, attr: str, var: str) -> str | None:
    value = getattr(args, attr, None)
    return value if value else os.environ.get(var) or None


def auth_from(args: argparse.Namespace) -> TokenSource:
    client_id = _env(args, "client_id", "AMPERITY_CLIENT_ID")
    client_secret = _env(args, "client_secret", "AMPERITY_CLIENT_SECRET")
    token = _env(args, "token", "AMPERITY_TOKEN")
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret)
    if client_id or client_secret:
        raise UsageError("client credentials need both --client-id and --client-secret (or AMPERITY_CLIENT_ID/_SECRET)")
    if token:
        return StaticToken(token)
    raise UsageError(
        "no credentials: pass --client-id/--client-secret or --token "
        "(or set AMPERITY_CLIENT_ID/AMPERITY_CLIENT_SECRET or AMPERITY_TOKEN)"
    )


def client_from(args: argparse.Namespace) -> AmperityClient:
    tenant = _env(args, "tenant", "AMPERITY_TENANT")
    if not tenant:
        raise UsageError("no tenant: pass --tenant or set AMPERITY_TENANT")
    options: dict[str, Any] = {}
    redis_url = _env(args, "redis_url", "AMPERITY_REDIS_URL")
    if redis_url:
        options.update(_redis_limits(redis_url, tenant, args))
    return AmperityClient(
        tenant=tenant,
        auth=auth_from(args),
        base_url=_env(args, "base_url", "AMPERITY_BASE_URL") or DEFAULT_BASE_URL,
        api_version=args.api_version,
        profile_api_version=args.profile_api_version,
        max_retries=args.max_retries,
        **options,
    )


def _redis_limits(url: str, tenant: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        from .redis_bucket import RedisTokenBucket
    except ImportError as exc:
        raise UsageError(f"--redis-url needs the redis extra: pip install 'amperity-async[redis]' ({exc})") from exc
    # The shared bucket has no window guard, so rate + capacity stays within each documented limit
    # (10/s, 2000/s): a strict one-second server window never sees one request too many.
    workers = max(1, int(getattr(args, "expected_workers", 1) or 1))
    common = {"tenant": tenant, "expected_workers": workers, "on_unavailable": args.redis_unavailable}
    return {
        "rate_limit": RedisTokenBucket(url, api="control-plane", rate=9.0, capacity=1, **common),
        "profile_rate_limit": RedisTokenBucket(url, api="profile", rate=1950.0, capacity=50, **common),
    }


def operation_from(name: str) -> OperationInfo:
    op = REGISTRY.get(name) or REGISTRY.get(name.replace("-", "_"))
    if op is None:
        known = ", ".join(sorted(o.name for o in REGISTRY if o.paginated))
        raise UsageError(f"unknown operation {name!r}; list operations: {known}")
    if not op.paginated:
        raise UsageError(f"{op.name} is not a list operation; extract works on: "
                         + ", ".join(sorted(o.name for o in REGISTRY if o.paginated)))
    return op


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes key=value, got {pair!r}")
        result[key] = value
    return result


# commands


async def cmd_extract(args: argparse.Namespace) -> int:
    op = operation_from(args.operation)
    raw = _key_values(args.param, "--param")
    positional = [raw.pop(name) for name in op.path_params if name in raw]
    if len(positional) != len(op.path_params):
        missing = [n for n in op.path_params if n not in raw]
        raise UsageError(f"{op.name} needs --param {'=... --param '.join(missing)}=...")
    if args.limit is not None:
        raw["limit"] = str(args.limit)
    if args.out == "-" and (args.resume or args.shards > 1):
        raise UsageError("--resume and --shards need --out FILE (a checkpoint is kept beside it)")
    async with client_from(args) as client:
        params = coerce_params(op, raw, client)
        missing_required = [q for q in op.required_query if q not in params]
        if missing_required:
            raise UsageError(f"{op.name} requires --param " + " --param ".join(f"{q}=..." for q in missing_required))
        progress = Progress(client)
        if args.out == "-":
            return await _extract_to_stdout(client, op, positional, params, args.max_items, progress)
        out = Path(args.out)
        update: Callable[[ExtractStats], None] = lambda s: progress.update(s.rows, s.pages)
        if args.shards > 1:
            window_of(op, params)
            stats = await extract_sharded(client, op, out, shards=args.shards, params=params,
                                          resume=args.resume, on_page=update)
        else:
            stats = await extract_to_file(client, op, out, args=positional, params=params, resume=args.resume,
                                          max_items=args.max_items, on_page=update)
        progress.finish()
        print(summary_table([stats], client), file=sys.stderr)
    return 0


async def _extract_to_stdout(
    client: AmperityClient, op: OperationInfo, args: list[str], params: dict[str, Any], max_items: int | None,
    progress: Progress,
) -> int:
    import msgspec

    encode = msgspec.json.Encoder().encode
    out = sys.stdout.buffer
    rows = pages = 0
    async with client.pages(op.load_module(), *args, **params) as pager:
        async for page in pager:
            items = page.raw if max_items is None else page.raw[: max(0, max_items - rows)]
            out.write(b"".join(encode(item) + b"\n" for item in items))
            out.flush()
            rows, pages = rows + len(items), pages + 1
            progress.update(rows, pages)
            if max_items is not None and rows >= max_items:
                break
    progress.finish()
    return 0


async def extract_all(
    client: AmperityClient,
    out_dir: Path,
    *,
    resume: bool = False,
    window: tuple[Any, Any] | None = None,
    on_page: Callable[[ExtractStats], None] | None = None,
    limit: int | None = None,
) -> list[ExtractStats]:
    """Every list operation (and every child list of each item of a parent list, e.g. the profiles
    of every index) concurrently, one JSON Lines file each, sharing the client's limits."""
    start, end = window or default_window()
    usable = [
        op for op in REGISTRY
        if op.paginated and (not op.unstable_only or client.api_versions.get(op.api) == op.stability)
    ]
    results: list[ExtractStats] = []

    def base_params(op: OperationInfo) -> dict[str, Any]:
        params: dict[str, Any] = {} if limit is None else {"limit": limit}
        for low, high in op.time_windows:
            if low in op.required_query or high in op.required_query:
                params.update({low: start, high: end})
        return params

    async def one(op: OperationInfo, target: Path, args: Sequence[Any] = ()) -> None:
        stats = ExtractStats(operation=op.name, target=str(target))
        results.append(stats)
        await extract_to_file(client, op, target, args=args, params=base_params(op), resume=resume,
                              stats=stats, on_page=on_page)

    async def children(parent: OperationInfo, child: OperationInfo) -> None:
        # The parent list is itself extracted; its ids are read here without a second copy on disk.
        async for item in client.pages(parent.load_module(), **base_params(parent)):
            for record in item.raw:
                ident = record.get("id") if isinstance(record, dict) else None
                if isinstance(ident, str) and ident:
                    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)
                    tg.start_soon(one, child, out_dir / f"{child.name}-{safe}.jsonl", [ident])

    async with anyio.create_task_group() as tg:
        for op in usable:
            if not op.path_params:
                tg.start_soon(one, op, out_dir / f"{op.name}.jsonl")
                continue
            parent = _parent_list(op, usable)
            if parent is not None and len(op.path_params) == 1:
                tg.start_soon(children, parent, op)
    results.sort(key=lambda s: s.target)
    return results


def _parent_list(child: OperationInfo, candidates: Sequence[OperationInfo]) -> OperationInfo | None:
    """The list whose items' ids fill the child's path, e.g. /indexes for /indexes/{id}/profiles."""
    prefix = child.path.split("/{", 1)[0]
    for op in candidates:
        if op.path == prefix and not op.path_params:
            return op
    return None


async def cmd_extract_all(args: argparse.Namespace) -> int:
    from .extract import parse_timestamp

    window = None
    if args.window_from or args.window_to:
        start, end = default_window()
        window = (
            parse_timestamp(args.window_from, "--from") if args.window_from else start,
            parse_timestamp(args.window_to, "--to") if args.window_to else end,
        )
    async with client_from(args) as client:
        progress = Progress(client)
        totals: dict[str, ExtractStats] = {}

        def update(stats: ExtractStats) -> None:
            totals[stats.target] = stats
            progress.update(sum(s.rows for s in totals.values()), sum(s.pages for s in totals.values()))

        results = await extract_all(client, Path(args.out), resume=args.resume, window=window, on_page=update,
                                    limit=args.limit)
        progress.finish()
        print(summary_table(results, client))
    return 0


async def cmd_check_upstream(args: argparse.Namespace) -> int:
    from .specs.sources import MIRROR_ENV, Lock
    from .specs.upstream import run_check

    lock_path = Path(args.lock)
    lock = Lock.load(lock_path)
    return await anyio.to_thread.run_sync(
        lambda: run_check(lock, os.environ.get(MIRROR_ENV) or None, sys.stdout, upstream_dir=lock_path.parent / "upstream")
    )


async def cmd_fake_tenant(args: argparse.Namespace) -> int:
    from amperity_async.testing.cli import run_from_args

    await run_from_args(args)
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    """The main job end to end: a fake tenant with the real limits, extract-all, a summary table."""
    from amperity_async.testing import FakeTenant, FakeTenantConfig

    config = FakeTenantConfig(rows=args.rows, indexes=args.indexes, profiles_per_index=args.profiles, seed=args.seed)
    out = Path(args.out)
    async with FakeTenant(config) as tenant:
        print(f"fake tenant {config.tenant!r} at {tenant.base_url} (10 requests/s control plane, 2000/s profiles)",
              file=sys.stderr)
        auth = ClientCredentials(config.client_id, config.client_secret)
        async with AmperityClient(tenant=config.tenant, auth=auth, base_url=tenant.base_url) as client:
            progress = Progress(client)
            totals: dict[str, ExtractStats] = {}

            def update(stats: ExtractStats) -> None:
                totals[stats.target] = stats
                progress.update(sum(t.rows for t in totals.values()), sum(t.pages for t in totals.values()))

            results = await extract_all(client, out, on_page=update, limit=args.limit)
            progress.finish()
            print(summary_table(results, client))
            print(f"\n{sum(r.rows for r in results):,} rows in {len(results)} files under {out}/ "
                  f"({client.refresher.fetch_count} token request(s))")
    return 0


# parser


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tenant and credentials (flags win over the environment)")
    group.add_argument("--tenant", help="tenant ID (AMPERITY_TENANT)")
    group.add_argument("--base-url", help=f"API base URL (AMPERITY_BASE_URL; default {DEFAULT_BASE_URL})")
    group.add_argument("--client-id", help="OAuth client ID (AMPERITY_CLIENT_ID)")
    group.add_argument("--client-secret", help="OAuth client secret (AMPERITY_CLIENT_SECRET)")
    group.add_argument("--token", help="a fixed access token (AMPERITY_TOKEN)")
    group.add_argument("--api-version", default="2024-04-01", help="control-plane api-version (default %(default)s)")
    group.add_argument("--profile-api-version", default="2025-07-31", help="Profile API api-version")
    group.add_argument("--max-retries", type=int, default=5, help="retries per request (default %(default)s)")
    group.add_argument("--redis-url", help="share the rate budget through Redis (AMPERITY_REDIS_URL)")
    group.add_argument("--expected-workers", type=int, default=1,
                       help="workers sharing the Redis budget (for the local fallback's share)")
    group.add_argument("--redis-unavailable", choices=("raise", "local"), default="raise",
                       help="when Redis is unreachable: fail, or fall back to a local share of the budget")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="amperity-async", description="Async client for Amperity's APIs: bulk extraction and tools.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    extract = commands.add_parser("extract", help="stream every item of one list operation as JSON Lines")
    extract.add_argument("operation", help="e.g. list_segment, list-events, list_profiles")
    extract.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="operation parameter, e.g. happened_from=2026-01-01T00:00:00Z, id=idx-1, "
                              "filter=first_name:Daniel,city:Oslo (repeatable)")
    extract.add_argument("--out", default="-", help="output file (JSON Lines), or - for stdout (default)")
    extract.add_argument("--limit", type=int, help="items per page (the API's limit parameter)")
    extract.add_argument("--max-items", type=int, help="stop after this many items")
    extract.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    extract.add_argument("--shards", type=int, default=1,
                         help="split the time window into N shards extracted concurrently")
    _add_connection_flags(extract)

    everything = commands.add_parser("extract-all", help="every list operation (and every index's profiles)")
    everything.add_argument("--out", default="out", help="output folder (default %(default)s)")
    everything.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    everything.add_argument("--limit", type=int, help="items per page")
    everything.add_argument("--from", dest="window_from", help="start of required time windows (default: all history)")
    everything.add_argument("--to", dest="window_to", help="end of required time windows (default: tomorrow)")
    _add_connection_flags(everything)

    demo = commands.add_parser("demo", help="extract-all against an embedded fake tenant with the real limits")
    demo.add_argument("--out", default="out", help="output folder (default %(default)s)")
    demo.add_argument("--rows", type=int, default=1000, help="items per collection (default %(default)s)")
    demo.add_argument("--indexes", type=int, default=3, help="profile indexes (default %(default)s)")
    demo.add_argument("--profiles", type=int, default=1000, help="profiles per index (default %(default)s)")
    demo.add_argument("--limit", type=int, default=100, help="items per page (default %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")

    check = commands.add_parser("check-upstream", help="compare the pinned specs with what Amperity serves now")
    check.add_argument("--lock", default="openapi/sources.lock.json", help="lock file (default %(default)s)")

    fake = commands.add_parser("fake-tenant", help="serve an embedded fake Amperity tenant on 127.0.0.1")
    try:
        from amperity_async.testing.cli import add_arguments
    except ImportError:  # the fake tenant's own dependencies are missing
        pass
    else:
        add_arguments(fake)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "extract": cmd_extract,
    "extract-all": cmd_extract_all,
    "check-upstream": cmd_check_upstream,
    "fake-tenant": cmd_fake_tenant,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(anyio.run(COMMANDS[args.command], args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigurationError, ExtractionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AmperityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help
        return int(exc.code or 0)


if __name__ == "__main__":
    sys.exit(main())
