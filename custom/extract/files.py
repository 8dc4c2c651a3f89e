"""One list into one JSON Lines output: a checkpointed file, or a stream such as stdout."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import attrs
import msgspec

from ..client import AmperityClient
from ..operations import OperationInfo
from .checkpoint import Cursor
from .errors import ExtractionError
from .journal import Journal, Resumption
from .plan import Plan
from .walk import Batch, walk

encode_lines = msgspec.json.Encoder().encode_lines
"""The items as JSON Lines: one compact JSON document and a newline per item."""


@attrs.define
class ExtractStats:
    operation: str
    target: str
    rows: int = 0
    pages: int = 0
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None
    resumed: bool = False
    """The output already held rows from an earlier attempt of the same run."""

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


ProgressHook = Callable[[ExtractStats], None]


async def extract_to_file(
    client: AmperityClient,
    op: OperationInfo,
    out: Path,
    *,
    args: Sequence[Any] = (),
    params: Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_items: int | None = None,
    run: str | None = None,
    stats: ExtractStats | None = None,
    on_page: ProgressHook | None = None,
) -> ExtractStats:
    """Every item of a list operation into ``out`` (JSON Lines), checkpointed after each page and
    synced to disk as ``Resumption.durability`` says (see ``Durability``).

    ``resume`` continues from the checkpoint beside ``out`` once it matches the output, the
    client's tenant and base URL, the parameters and (if given) ``run``; ``overwrite`` allows
    starting over an output that holds rows. Without either, such an output is refused.
    """
    plan = Plan.build(op, args, params, max_items)
    return await extract_plan(
        client, plan, out, Resumption(resume, overwrite, run), stats=stats, on_page=on_page
    )


async def extract_plan(
    client: AmperityClient,
    plan: Plan,
    out: Path,
    how: Resumption,
    *,
    stats: ExtractStats | None = None,
    on_page: ProgressHook | None = None,
) -> ExtractStats:
    stats = stats or ExtractStats(operation=plan.op.name, target=str(out))
    with anyio.CancelScope(shield=True):  # a cancel now would drop the opened, locked output unclosed
        journal = await anyio.to_thread.run_sync(Journal.begin, out, plan.source(client), how)
    with journal:
        position = journal.position
        stats.rows, stats.pages, stats.resumed = position.rows, position.pages, position.length > 0

        async def deliver(batch: Batch) -> None:
            # Into the page cache, here: a worker thread per page would cost more than the write.
            written = journal.append(encode_lines(batch.items), batch.cursor, len(batch.items), batch.pages)
            stats.rows, stats.pages = written.rows, written.pages
            if journal.sync_due():
                # A worker thread waits for the disk, and finishes even if the task is cancelled.
                await anyio.to_thread.run_sync(journal.sync)
            if on_page is not None:
                on_page(stats)

        try:
            await walk(client, plan, position.cursor, position.rows, deliver)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(ExtractionError):
                await anyio.to_thread.run_sync(journal.settle)  # best effort: a resume recovers anyway
            raise
        await anyio.to_thread.run_sync(journal.settle)
    stats.finished = time.monotonic()
    return stats


async def extract_to_stream(
    client: AmperityClient,
    plan: Plan,
    stream: BinaryIO,
    *,
    stats: ExtractStats | None = None,
    on_page: ProgressHook | None = None,
) -> ExtractStats:
    """Every item into ``stream`` (e.g. stdout), flushed after each page; no checkpoint."""
    stats = stats or ExtractStats(operation=plan.op.name, target="-")

    async def deliver(batch: Batch) -> None:
        stream.write(encode_lines(batch.items))
        stream.flush()
        stats.rows += len(batch.items)
        stats.pages += batch.pages
        if on_page is not None:
            on_page(stats)

    await walk(client, plan, Cursor(), 0, deliver)
    stats.finished = time.monotonic()
    return stats


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
