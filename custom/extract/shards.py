"""One list split by time window into shards read concurrently, then merged into one output.

Each shard is an ordinary checkpointed output beside the target (``<out>.shard<i>``), bound to the
target's run, so a resume never mixes shards of two runs. The target is derived from the shards:
until its checkpoint says done it is rebuilt from them, and the shards are removed only after.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import OperationInfo
from .boundaries import BoundaryGuard, timestamp_field
from .files import ExtractStats, ProgressHook, extract_plan
from .journal import Journal, Resumption
from .errors import OutputError, OutputExistsError
from .output import remove, sync_folder
from .plan import Plan
from .windows import Window, window_in, window_names


def shard_path(out: Path, index: int) -> Path:
    return out.with_name(f"{out.name}.shard{index}")


def _shard_files(out: Path) -> list[Path]:
    """Shards of ``out`` and their checkpoints, whatever run left them."""
    pattern = re.compile(re.escape(out.name) + r"\.shard\d+(\.checkpoint)?(\.tmp)?")
    try:
        return sorted(p for p in out.parent.iterdir() if pattern.fullmatch(p.name))
    except FileNotFoundError:
        return []


async def extract_sharded(
    client: AmperityClient,
    op: OperationInfo,
    out: Path,
    *,
    shards: int,
    params: Mapping[str, Any],
    args: Sequence[Any] = (),
    resume: bool = False,
    overwrite: bool = False,
    stats: ExtractStats | None = None,
    on_page: ProgressHook | None = None,
) -> ExtractStats:
    """Split the time window into ``shards`` windows, extract them concurrently, merge them in order."""
    names = window_names(op, params)
    if names is None:
        raise ConfigurationError(f"{op.name} has no time-window filter to shard on (--shards needs one)")
    windows = window_in(op, params, names).split(shards)
    whole = Plan.build(op, args, params)
    parts = [shard_path(out, i) for i in range(len(windows))]
    stats = stats or ExtractStats(operation=op.name, target=str(out))
    how = Resumption(resume=resume, overwrite=overwrite, rebuildable=True)
    before_start = functools.partial(_clear_old_shards, out, overwrite)
    with anyio.CancelScope(shield=True):  # a cancel now would drop the opened, locked output unclosed
        journal = await anyio.to_thread.run_sync(
            functools.partial(Journal.begin, out, whole.source(client, shards=shards), how, before_start=before_start)
        )
    with journal:
        if not journal.position.cursor.done:
            shard_stats = await _extract_shards(client, whole, names, windows, parts, journal.run, resume, stats, on_page)
            merged = await anyio.to_thread.run_sync(
                journal.rebuild, _merged_lines(op, names[0], windows, parts), sum(s.pages for s in shard_stats)
            )
            stats.resumed = any(s.resumed for s in shard_stats)
        else:
            merged = journal.position
            stats.resumed = True
        stats.rows, stats.pages = merged.rows, merged.pages
        await anyio.to_thread.run_sync(_remove_shards, out)  # still under the lock
    stats.finished = time.monotonic()
    return stats


async def _extract_shards(
    client: AmperityClient,
    whole: Plan,
    names: tuple[str, str],
    windows: Sequence[Window],
    parts: Sequence[Path],
    run: str,
    resume: bool,
    stats: ExtractStats,
    on_page: ProgressHook | None,
) -> list[ExtractStats]:
    low, high = names
    shard_stats = [ExtractStats(operation=whole.op.name, target=str(p)) for p in parts]

    def progress(_: ExtractStats) -> None:
        stats.rows = sum(s.rows for s in shard_stats)
        stats.pages = sum(s.pages for s in shard_stats)
        if on_page is not None:
            on_page(stats)

    async with anyio.create_task_group() as tg:
        for window, part, part_stats in zip(windows, parts, shard_stats, strict=True):
            plan = Plan.build(whole.op, whole.args, {**whole.params, low: window.start, high: window.end})
            how = Resumption(resume=resume, run=run)
            tg.start_soon(functools.partial(extract_plan, client, plan, part, how, stats=part_stats, on_page=progress))
    return shard_stats


def _merged_lines(op: OperationInfo, low: str, windows: Sequence[Window], parts: Sequence[Path]) -> Iterator[bytes]:
    """The shards' lines in window order, without an item twice across a shard boundary."""
    guard = BoundaryGuard(op, timestamp_field(op, low), remember_all=not op.paginated)
    decode = msgspec.json.decode
    for index, (window, part) in enumerate(zip(windows, parts, strict=True)):
        guard.enter(window.end, first=index == 0)
        try:
            with open(part, "rb") as source:
                for line in source:
                    if guard.active and not guard.admit([decode(line)]):
                        continue
                    yield line
        except OSError as exc:
            raise OutputError(part, "read", exc) from exc


def _clear_old_shards(out: Path, overwrite: bool) -> None:
    """Before a fresh start: shards left by an earlier run are partial output too."""
    for part in _shard_files(out):
        if part.suffix.startswith(".shard") and part.stat().st_size and not overwrite:
            raise OutputExistsError(
                f"{part} holds rows of an unfinished sharded extraction of {out.name}; pass --resume "
                f"to continue it or --overwrite to start over"
            )
    _remove_shards(out)


def _remove_shards(out: Path) -> None:
    files = _shard_files(out)
    for path in files:
        remove(path)
    if files:
        sync_folder(out.parent)
