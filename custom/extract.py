"""Bulk extraction to JSON Lines: checkpointed, resumable, sharded by time window, fanned out.

A checkpoint is written after each page is durably in the output file: the cursor of the next page
and the output's length at that moment. Resuming truncates anything written after the last
checkpoint (a page half-written when the process died) and continues from the cursor, so the
output has no duplicates and no gaps.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import attrs
import msgspec

from .client import AmperityClient
from .errors import AmperityError, ConfigurationError
from .operations import OperationInfo

_encode = msgspec.json.Encoder().encode


class ExtractionError(AmperityError):
    """An extraction cannot start or continue (bad checkpoint, parameters that do not match it)."""


@attrs.define
class ExtractStats:
    operation: str
    target: str
    rows: int = 0
    pages: int = 0
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None
    resumed_from: str | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


def parse_timestamp(value: str, what: str) -> datetime:
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(f"{what}={value!r} is not an ISO-8601 timestamp (e.g. 2026-04-01T00:00:00Z)") from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def format_timestamp(stamp: datetime) -> str:
    return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


def coerce_params(op: OperationInfo, raw: Mapping[str, str], client: AmperityClient) -> dict[str, Any]:
    """``--param k=v`` strings to the generated function's argument types (by its annotations)."""
    module = op.load_module()
    annotations = module._get_kwargs.__annotations__
    params: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in annotations and f"{name}_" in annotations:
            name = f"{name}_"  # the generator appends _ to names that shadow builtins (type, filter)
        if name not in annotations or name == "return":
            accepted = ", ".join(sorted(a for a in annotations if a != "return")) or "nothing"
            raise ConfigurationError(f"{op.name} has no parameter {key!r}; it takes: {accepted}")
        kind = str(annotations[name])
        try:
            if "datetime" in kind:
                params[name] = parse_timestamp(value, key)
            elif "bool" in kind:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                params[name] = value.lower() in ("true", "1")
            elif "int" in kind:
                params[name] = int(value)
            elif "Filter" in kind or "filter" in name:
                model = _model_named(kind)
                pairs = dict(pair.split(":", 1) for pair in value.split(","))
                params[name] = model.from_dict(pairs)
            else:
                params[name] = value
        except ValueError as exc:
            raise ConfigurationError(f"{op.name}: {key}={value!r} is not a valid {kind}") from exc
    return params


def _model_named(annotation: str) -> Any:
    from amperity_async import models

    for name in dir(models):
        if name in annotation and hasattr(getattr(models, name), "from_dict"):
            return getattr(models, name)
    raise ConfigurationError(f"cannot build a value of type {annotation} from the command line")


@attrs.frozen
class Checkpoint:
    operation: str
    params: dict[str, Any]
    next_token: str | None
    offset: int
    rows: int
    pages: int
    done: bool

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                operation=str(data["operation"]),
                params=dict(data["params"]),
                next_token=data["next_token"],
                offset=int(data["offset"]),
                rows=int(data["rows"]),
                pages=int(data["pages"]),
                done=bool(data["done"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExtractionError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(attrs.asdict(self), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


def _params_key(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (format_timestamp(v) if isinstance(v, datetime) else v if isinstance(v, (str, int, bool)) else repr(v))
            for k, v in sorted(params.items())}


async def extract_to_file(
    client: AmperityClient,
    op: OperationInfo,
    out: Path,
    *,
    args: Sequence[Any] = (),
    params: Mapping[str, Any] | None = None,
    resume: bool = False,
    max_items: int | None = None,
    stats: ExtractStats | None = None,
    on_page: Callable[[ExtractStats], None] | None = None,
) -> ExtractStats:
    """Stream every item of a list operation into ``out`` (JSON Lines), checkpointing each page."""
    params = dict(params or {})
    stats = stats or ExtractStats(operation=op.name, target=str(out))
    ckpt_path = checkpoint_path(out)
    key = {"args": list(args), **_params_key(params)}
    start_token: str | None = None
    checkpoint = Checkpoint.load(ckpt_path) if resume else None
    if checkpoint is not None:
        if checkpoint.operation != op.operation_id or checkpoint.params != key:
            raise ExtractionError(
                f"{ckpt_path} belongs to {checkpoint.operation} with {checkpoint.params}, not {op.operation_id} "
                f"with {key}; use the same parameters or delete the checkpoint"
            )
        stats.rows, stats.pages, stats.resumed_from = checkpoint.rows, checkpoint.pages, checkpoint.next_token
        if checkpoint.done:
            stats.finished = time.monotonic()
            return stats
        start_token = checkpoint.next_token
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+b" if checkpoint is not None and out.exists() else "wb"
    with open(out, mode) as handle:  # noqa: ASYNC230 - a local file; each page's write runs in a thread
        handle = cast(BinaryIO, handle)
        if checkpoint is not None:
            handle.truncate(checkpoint.offset)  # drop a page written after the last checkpoint
            handle.seek(checkpoint.offset)
        remaining = None if max_items is None else max(0, max_items - stats.rows)
        pager = client.pages(op.load_module(), *args, start_token=start_token, **params)
        async with pager:
            done = remaining == 0
            while not done:
                try:
                    page = await pager.__anext__()
                except StopAsyncIteration:
                    break
                items = page.raw if remaining is None else page.raw[:remaining]
                await _write_lines(handle, items)
                stats.rows += len(items)
                stats.pages += 1
                if remaining is not None:
                    remaining -= len(items)
                done = pager.next_token is None or remaining == 0
                Checkpoint(
                    operation=op.operation_id, params=key, next_token=pager.next_token,
                    offset=handle.tell(), rows=stats.rows, pages=stats.pages, done=done,
                ).write(ckpt_path)
                if on_page is not None:
                    on_page(stats)
        if not done:
            Checkpoint(op.operation_id, key, None, handle.tell(), stats.rows, stats.pages, True).write(ckpt_path)
    stats.finished = time.monotonic()
    return stats


async def _write_lines(handle: BinaryIO, items: Sequence[Any]) -> None:
    if not items:
        return
    data = b"".join(_encode(item) + b"\n" for item in items)

    def write() -> None:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

    await anyio.to_thread.run_sync(write)


def split_window(start: datetime, end: datetime, shards: int) -> list[tuple[datetime, datetime]]:
    if shards < 1:
        raise ConfigurationError(f"--shards must be >= 1, got {shards}")
    if end <= start:
        raise ConfigurationError(f"the time window is empty: {format_timestamp(start)} >= {format_timestamp(end)}")
    step = (end - start) / shards
    bounds = [start + step * i for i in range(shards)] + [end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def window_of(op: OperationInfo, params: Mapping[str, Any]) -> tuple[str, str]:
    for low, high in op.time_windows:
        if low in params or high in params:
            return low, high
    if op.time_windows:
        return op.time_windows[0]
    raise ConfigurationError(f"{op.name} has no time-window filter to shard on (--shards needs one)")


async def extract_sharded(
    client: AmperityClient,
    op: OperationInfo,
    out: Path,
    *,
    shards: int,
    params: Mapping[str, Any],
    resume: bool = False,
    stats: ExtractStats | None = None,
    on_page: Callable[[ExtractStats], None] | None = None,
) -> ExtractStats:
    """Split the time window into ``shards`` and extract them concurrently, then merge in order.

    Windows are half-open (from inclusive, to exclusive, as documented), so shards never overlap;
    items whose timestamp falls exactly on a shard boundary are still checked for duplicates.
    """
    low, high = window_of(op, params)
    if low not in params or high not in params:
        raise ConfigurationError(f"--shards on {op.name} needs both --param {low}=... and --param {high}=...")
    start, end = params[low], params[high]
    windows = split_window(start, end, shards)
    stats = stats or ExtractStats(operation=op.name, target=str(out))
    parts = [out.with_name(f"{out.name}.shard{i}") for i in range(len(windows))]
    shard_stats = [ExtractStats(operation=op.name, target=str(p)) for p in parts]

    def progress(_: ExtractStats) -> None:
        stats.rows = sum(s.rows for s in shard_stats)
        stats.pages = sum(s.pages for s in shard_stats)
        if on_page is not None:
            on_page(stats)

    async with anyio.create_task_group() as tg:
        for (a, b), part, part_stats in zip(windows, parts, shard_stats, strict=True):
            shard_params = {**params, low: a, high: b}
            tg.start_soon(
                functools.partial(
                    extract_to_file, client, op, part, params=shard_params, resume=resume, stats=part_stats,
                    on_page=progress,
                )
            )
    field = low[: -len("_from")] + "_at"
    boundaries = {format_timestamp(b) for _, b in windows[:-1]}
    stats.rows = await anyio.to_thread.run_sync(_merge_parts, parts, out, field, boundaries)
    stats.pages = sum(s.pages for s in shard_stats)
    for part in parts:
        part.unlink(missing_ok=True)
        checkpoint_path(part).unlink(missing_ok=True)
    stats.finished = time.monotonic()
    return stats


def _merge_parts(parts: Sequence[Path], out: Path, field: str, boundaries: set[str]) -> int:
    decode = msgspec.json.decode
    at_boundary: set[bytes] = set()
    rows = 0
    tmp = out.with_name(out.name + ".merging")
    with open(tmp, "wb") as target:
        for part in parts:
            with open(part, "rb") as source:
                for line in source:
                    if boundaries:
                        value = decode(line).get(field) if field.encode() in line else None
                        if isinstance(value, str) and _normal(value) in boundaries:
                            if line in at_boundary:
                                continue
                            at_boundary.add(line)
                    target.write(line)
                    rows += 1
        target.flush()
        os.fsync(target.fileno())
    os.replace(tmp, out)
    return rows


def _normal(value: str) -> str:
    try:
        return format_timestamp(parse_timestamp(value, "timestamp"))
    except ConfigurationError:
        return value


def default_window(days: int = 365 * 30) -> tuple[datetime, datetime]:
    """All of a tenant's history, for required windows nobody gave: up to a day from now."""
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    return end - timedelta(days=days), end
