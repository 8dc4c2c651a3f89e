"""Shard files merged into their target in window order, at about the speed of copying them.

The target holds the shards' lines in window order, without an item that the previous window
already delivered on their shared boundary: what ``BoundaryGuard`` admits, line by line, when it
reads the windows one after the other. Only the process holding the target merges, after every
worker is done, so decoding each of a million lines there (about 2 µs a line) cost a run with
two workers what a third of its pages cost each worker.

Here the shards go through in blocks of whole lines, copied unchanged. A block is looked at line
by line, exactly as before, only when that can change something:

- the previous window left keys to drop (a server that includes both ends of a window put items
  on the boundary); or
- the guard remembers every key of a window (lists without the window's timestamp field); or
- the block may hold an item on the window's end. To rule that out, only the timestamp field is
  decoded, as a string (C speed). An ISO-8601 value whose date is written ``YYYY-MM-DD`` names
  an instant within a day of that date (UTC offsets are under 24 hours), so a block whose dates
  are all of that form and none within a day of the window's end holds no item on it. Any other
  value, or a block the narrow decoder refuses, is looked at line by line.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from operator import attrgetter
from pathlib import Path

import msgspec

from ..operations import OperationInfo
from .boundaries import BoundaryGuard, timestamp_field
from .errors import ExtractionError, OutputError
from .windows import Window

BLOCK_SIZE = 1 << 20
"""Bytes read at a time; a block ends at the last newline in it."""
_PLAIN_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_decode = msgspec.json.decode


def merged_blocks(
    op: OperationInfo, low: str, windows: Sequence[Window], parts: Sequence[Path]
) -> Iterator[bytes]:
    """The shards' lines in window order, in blocks of whole lines, each item once across a boundary.

    ``low`` is the window's lower parameter (``happened_from``), ``parts`` the shard files in
    the order of ``windows``."""
    field = timestamp_field(op, low)
    guard = BoundaryGuard(op, field, remember_all=not op.paginated)
    stamps = _stamp_reader(field) if field is not None else None
    for index, (window, part) in enumerate(zip(windows, parts, strict=True)):
        guard.enter(window.end, first=index == 0)
        days = _days_around(window.end.date())
        last = index == len(windows) - 1  # no window follows: its end keys guard nothing
        for block in _blocks(part):
            if not guard.active:
                yield block
            elif stamps is not None and not guard.previous and (last or _off_the_end(stamps(block), days)):
                yield block  # admitting it line by line would keep every line, to no purpose
            else:
                kept = _admitted(guard, part, block)
                if kept:
                    yield kept


StampReader = Callable[[bytes], list[str | None] | None]


@functools.cache
def _stamp_reader(field: str) -> StampReader:
    """Reads the value of ``field`` of each line of a block (a string, or None when absent or
    null), or None when a line is not JSON or the value is of another type."""
    decoder = msgspec.json.Decoder(msgspec.defstruct("Stamp", [(field, str | None, None)]))
    value = attrgetter(field)

    def read(block: bytes) -> list[str | None] | None:
        try:
            return list(map(value, decoder.decode_lines(block)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    return read


def _days_around(day: date) -> frozenset[str]:
    return frozenset((day + timedelta(days=shift)).isoformat() for shift in (-1, 0, 1))


def _off_the_end(stamps: list[str | None] | None, days: frozenset[str]) -> bool:
    """Whether none of ``stamps`` can name the window's end, whose date and the days either
    side are ``days`` (False when unsure)."""
    if stamps is None:
        return False
    dates = {stamp[:10] for stamp in stamps if stamp is not None}
    return all(day not in days and _PLAIN_DATE.fullmatch(day) for day in dates)


def _admitted(guard: BoundaryGuard, part: Path, block: bytes) -> bytes:
    """The lines of ``block`` the guard admits (remembering those on the window's end)."""
    kept: list[bytes] = []
    for line in block.splitlines(keepends=True):
        try:
            item = _decode(line)
        except msgspec.DecodeError as exc:
            raise ExtractionError(
                f"{part} holds a line that is not JSON ({exc}); its worker's output was changed: "
                f"start over with --overwrite"
            ) from exc
        if guard.admit([item]):
            kept.append(line)
    return b"".join(kept)


def _blocks(part: Path) -> Iterator[bytes]:
    """``part`` in blocks of whole lines of about ``BLOCK_SIZE`` bytes (the last one as the file
    ends); a line longer than that is a block of its own."""
    try:
        fd = os.open(part, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OutputError(part, "read", exc) from exc
    try:
        offset, size = 0, BLOCK_SIZE
        while chunk := _read(part, fd, size, offset):
            cut = chunk.rfind(b"\n") + 1
            if not cut and len(chunk) == size:
                size *= 2  # no line ends in this block yet
                continue
            block = chunk if cut in (0, len(chunk)) else chunk[:cut]
            yield block
            offset, size = offset + len(block), BLOCK_SIZE
    finally:
        os.close(fd)


def _read(part: Path, fd: int, size: int, offset: int) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise OutputError(part, "read", exc) from exc
