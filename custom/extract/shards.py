"""One list split by time window into shards, read concurrently (here, or by worker processes
or a cluster: ``ListJob``), then merged into one output.

Each shard is an ordinary checkpointed output beside the target (``<out>.shard<i>``), bound to the
target's run, so a resume never mixes shards of two runs. The target is derived from the shards:
until its checkpoint says done it is rebuilt from them, and the shards are removed only after.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import OperationInfo
from .checkpoint import Position
from .connection import Connection
from .errors import OutputExistsError
from .files import ExtractStats, ProgressHook
from .journal import Durability, Journal, Resumption
from .merge import merged_blocks
from .output import remove, sync_folder
from .plan import Plan
from .specs import ShardSpec, run_shard
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


class ListJob:
    """One list split by time window, planned and finished by the process that holds its target.

    ``with ListJob.begin(...) as job``: the target is locked and checked (or its leftovers
    cleared) for as long as the block runs; ``job.specs`` are the shards still to extract (none
    once the target is done), to run anywhere with ``run_shard``; ``job.finish(pages)`` merges
    them into the target in window order and removes them. Blocking: call it from a thread in
    async code.
    """

    def __init__(
        self,
        journal: Journal,
        op: OperationInfo,
        low: str,
        windows: Sequence[Window],
        specs: tuple[ShardSpec, ...],
    ) -> None:
        self._journal = journal
        self._op = op
        self._low = low
        self._windows = tuple(windows)
        self.specs = specs

    @classmethod
    def begin(
        cls,
        connection: Connection,
        op: OperationInfo,
        out: Path,
        *,
        shards: int,
        params: Mapping[str, Any],
        args: Sequence[Any] = (),
        resume: bool = False,
        overwrite: bool = False,
        durability: Durability | None = None,
    ) -> ListJob:
        names = window_names(op, params)
        if names is None:
            raise ConfigurationError(f"{op.name} has no time-window filter to shard on (--shards needs one)")
        windows = window_in(op, params, names).split(shards)
        whole = Plan.build(op, args, params)
        how = Resumption(resume=resume, overwrite=overwrite, rebuildable=True)
        before_start = functools.partial(_clear_old_shards, out, overwrite)
        journal = Journal.begin(out, whole.source(connection, shards=shards), how, before_start=before_start)
        low, high = names
        specs = (
            ()
            if journal.position.cursor.done
            else tuple(
                ShardSpec(
                    connection,
                    op.name,
                    shard_path(out, i),
                    journal.run,
                    tuple(args),
                    {**params, low: window.start, high: window.end},
                    durability=durability or Durability(),
                )
                for i, window in enumerate(windows)
            )
        )
        return cls(journal, op, low, windows, specs)

    @property
    def target(self) -> Path:
        return self._journal.path

    @property
    def position(self) -> Position:
        """What the target holds (all of it once ``finish`` returned)."""
        return self._journal.position

    def finish(self, pages: int) -> Position:
        """Merge the shards (all extracted; ``pages`` they took in all) into the target, then remove them."""
        if not self._journal.position.cursor.done:
            parts = [spec.out for spec in self.specs]
            self._journal.rebuild(merged_blocks(self._op, self._low, self._windows, parts), pages)
        _remove_shards(self.target)  # still under the lock
        return self._journal.position

    def close(self) -> None:
        self._journal.close()

    def __enter__(self) -> ListJob:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    durability: Durability | None = None,
    stats: ExtractStats | None = None,
    on_page: ProgressHook | None = None,
) -> ExtractStats:
    """Split the time window into ``shards`` windows, extract them concurrently, merge them in order."""
    stats = stats or ExtractStats(operation=op.name, target=str(out))
    begin = functools.partial(
        ListJob.begin,
        Connection.of(client),
        op,
        out,
        shards=shards,
        params=params,
        args=args,
        resume=resume,
        overwrite=overwrite,
        durability=durability,
    )
    with anyio.CancelScope(shield=True):  # a cancel now would drop the opened, locked output unclosed
        job = await anyio.to_thread.run_sync(begin)
    with job:
        shard_stats = [ExtractStats(operation=op.name, target=str(spec.out)) for spec in job.specs]

        def progress(_: ExtractStats) -> None:
            stats.rows = sum(s.rows for s in shard_stats)
            stats.pages = sum(s.pages for s in shard_stats)
            if on_page is not None:
                on_page(stats)

        async with anyio.create_task_group() as tg:
            for spec, part_stats in zip(job.specs, shard_stats, strict=True):
                tg.start_soon(functools.partial(run_shard, spec, client, stats=part_stats, on_page=progress))
        merged = await anyio.to_thread.run_sync(job.finish, sum(s.pages for s in shard_stats))
        stats.resumed = not job.specs or any(s.resumed for s in shard_stats)
        stats.rows, stats.pages = merged.rows, merged.pages
    stats.finished = time.monotonic()
    return stats


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
