"""An output file and the checkpoint that vouches for it: starting, resuming, appending.

Starting fresh removes the old checkpoint before the output is emptied, so no later ``--resume``
can trust a checkpoint of rows that are gone. Resuming checks the checkpoint against the source,
the run and the file (identity, length, sha256 of the bytes) and refuses with one sentence saying
what differs and what to do. Appending writes the checkpoint naming the page as pending first and
the page second (atomic, but not synced); ``sync`` makes both durable and the pending pages
committed, as often as ``Durability`` says; settling syncs once more (and cuts off a page whose
write failed).

``append`` writes to the page cache and returns at once; ``begin``, ``sync``, ``settle`` and
``rebuild`` wait for the disk or read whole files: the extraction calls those in a worker thread.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import attrs

from ..clock import Clock, SystemClock
from .checkpoint import Checkpoint, Cursor, Position, Source, checkpoint_path
from .errors import CheckpointError, ExtractionInputError, OutputError, OutputExistsError
from .output import OutputFile, remove

_REBUILD_CHUNK = 1 << 20
# Pages are written in groups: replacing the checkpoint costs a tenth of a millisecond of the
# kernel's time (it allocates and flushes the new file), too much for every page of a fast list.
# A group is written once the last write is this old, or this big: at most that much is fetched
# again after a kill.
_WRITE_SECONDS = 0.02
_WRITE_BYTES = 1 << 20


def _chunks(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at least ``size`` bytes (but the last); a piece of half
    that on its own passes through uncopied (a merge's blocks end at a line, a little short of
    their size)."""
    pending: list[bytes] = []
    pending_size = 0
    for piece in pieces:
        if not pending and len(piece) >= size // 2:
            yield piece
            continue
        pending.append(piece)
        pending_size += len(piece)
        if pending_size >= size:
            yield b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)


class _BackgroundDigest:
    """sha256 of chunks, computed on a thread of its own: hashlib releases the GIL on large
    buffers, so one chunk is hashed while the next is read and written (a rebuilt output is
    hashed whole, a third of the time a merge takes). At most one chunk waits to be hashed."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amperity-digest")
        self._pending: Future[None] | None = None

    def __enter__(self) -> _BackgroundDigest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def update(self, chunk: bytes) -> None:
        self._wait()
        self._pending = self._pool.submit(self.sha256.update, chunk)

    def hexdigest(self) -> str:
        self._wait()
        return self.sha256.hexdigest()

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


def new_run_id() -> str:
    return uuid.uuid4().hex


def _at_least_one_page(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExtractionInputError(f"sync pages must be a whole number of at least 1, got {value!r}")


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (finite and value > 0):
        raise ExtractionInputError(f"sync seconds must be a positive number, got {value!r}")


@attrs.frozen
class Durability:
    """How often an output and its checkpoint are synced to disk: once ``pages`` pages were written
    since the last sync, or ``seconds`` seconds passed, whichever comes first.

    Between syncs every page is still written after a checkpoint naming it (atomically replaced,
    not synced), so a process that is killed loses nothing it wrote: ``--resume`` goes on after the
    last complete page. A machine that stops (power loss, kernel crash) may lose the pages since the
    last sync; ``--resume`` then cuts the file back to the last synced page and fetches the rest
    again. Either way no row is doubled or corrupt. ``Durability(pages=1)`` syncs every page.
    """

    pages: int = attrs.field(default=1000, validator=_at_least_one_page)
    seconds: float = attrs.field(default=0.5, validator=_positive_seconds)


@attrs.frozen
class Resumption:
    """What the caller asked for: resume or not, overwrite or not, and which run the output must belong to."""

    resume: bool = False
    overwrite: bool = False
    run: str | None = None
    rebuildable: bool = False
    """The output is derived from other files (merged shards): unfinished, it may be rebuilt from scratch."""
    durability: Durability = Durability()


class Journal:
    """``with Journal.begin(out, source, how) as journal``: the output locked, at a verified position."""

    def __init__(
        self,
        output: OutputFile,
        run: str,
        source: Source,
        position: Position,
        digest: hashlib._Hash,
        *,
        durability: Durability = Durability(),
        clock: Clock | None = None,
    ) -> None:
        self.output = output
        self.run = run
        self.source = source
        self.position = position
        """Everything taken by ``append``: the state once the pages waiting to be written are."""
        self.written = position
        """What the file holds (the checkpoint's ``pending``, or ``committed``)."""
        self.durable = position
        """What the file durably holds (the checkpoint's ``committed``)."""
        self._unwritten: list[bytes] = []
        self._unwritten_bytes = 0
        self._digest = digest
        self._checkpoint_path = checkpoint_path(output.path)
        self._identity = output.identity
        self._durability = durability
        self._clock = clock or SystemClock()
        self._synced_at = self._clock.now()
        self._written_at = -math.inf  # the first page is written at once

    @property
    def path(self) -> Path:
        return self.output.path

    @classmethod
    def begin(
        cls,
        path: Path,
        source: Source,
        how: Resumption,
        *,
        before_start: Callable[[], None] | None = None,
        clock: Clock | None = None,
    ) -> Journal:
        """Lock ``path`` and resume it or start it over; ``before_start`` runs, under the lock, just
        before a fresh start empties the output (to check or clear what belongs to it)."""
        output = OutputFile.open(path)
        try:
            if how.resume:
                journal = cls._resume(output, source, how, before_start)
            else:
                if before_start is not None:
                    before_start()
                journal = cls.start(output, source, how)
        except BaseException:
            output.close()
            raise
        if clock is not None:
            journal._clock = clock
            journal._synced_at = clock.now()
        return journal

    @classmethod
    def start(cls, output: OutputFile, source: Source, how: Resumption) -> Journal:
        size = output.size()
        if size and not how.overwrite:
            raise OutputExistsError(
                f"{output.path} already holds {size:,} bytes of rows; pass --resume to continue that "
                f"extraction or --overwrite to start it over"
            )
        remove(checkpoint_path(output.path))
        output.truncate(0)
        run = how.run or new_run_id()
        journal = cls(output, run, source, Position.empty(), hashlib.sha256(), durability=how.durability)
        journal._write_checkpoint(journal.position)
        return journal

    @classmethod
    def _resume(
        cls, output: OutputFile, source: Source, how: Resumption, before_start: Callable[[], None] | None
    ) -> Journal:
        path = output.path
        checkpoint = Checkpoint.load(checkpoint_path(path))
        if checkpoint is None:
            if output.size():
                raise CheckpointError(
                    f"{path} holds rows but has no checkpoint ({checkpoint_path(path).name}), so where it "
                    f"stopped is unknown; start over with --overwrite"
                )
            if before_start is not None:
                before_start()
            return cls.start(output, source, attrs.evolve(how, overwrite=True))  # nothing yet: begin
        difference = source.difference(checkpoint.source)
        if difference is not None:
            raise CheckpointError(
                f"the checkpoint of {path} is for {difference}; resume with the same parameters, "
                f"or start over with --overwrite"
            )
        if how.run is not None and checkpoint.run != how.run:
            raise CheckpointError(
                f"{path} belongs to another run ({checkpoint.run}) than the one being resumed ({how.run}); "
                f"start over with --overwrite"
            )
        if not output.existed:
            remove(path)
            raise CheckpointError(
                f"{path} is gone but its checkpoint describes {checkpoint.committed.rows:,} rows "
                f"(moved or deleted?); put it back or start over with --overwrite"
            )
        if output.identity != checkpoint.output:
            raise CheckpointError(
                f"{path} is not the file its checkpoint was written for (it was replaced, copied or moved); "
                f"put the original back or start over with --overwrite"
            )
        if how.rebuildable and not checkpoint.committed.cursor.done:
            output.truncate(0)
            empty = Position.empty()
            return cls(output, checkpoint.run, source, empty, hashlib.sha256(), durability=how.durability)
        position, digest = _verified_position(output, checkpoint)
        output.sync()  # what the stopped run wrote is durable before a checkpoint names it committed
        return cls(output, checkpoint.run, source, position, digest, durability=how.durability)

    def append(self, data: bytes, cursor: Cursor, rows: int, pages: int = 1) -> Position:
        """Take ``data`` (the rows before ``cursor``) and return the state after it; it is written
        with the pages before it once the last write is ``_WRITE_SECONDS`` old (or ``_WRITE_BYTES``
        wait), and synced as often as ``Durability`` says (``sync_due``, ``sync``)."""
        before = self.position
        digest = self._digest
        digest.update(data)
        after = Position(
            cursor, before.length + len(data), digest.hexdigest(), before.rows + rows, before.pages + pages
        )
        self.position = after
        self._unwritten.append(data)
        self._unwritten_bytes += len(data)
        if self._unwritten_bytes >= _WRITE_BYTES or self._clock.now() - self._written_at >= _WRITE_SECONDS:
            self.write()
        return after

    def write(self) -> None:
        """Write the pages taken so far: the checkpoint naming them pending first (replaced
        atomically, not synced), the rows second. A process killed at any point leaves the file at
        the checkpoint's committed or pending position, or in between (cut off by a resume)."""
        if self._unwritten:
            position, written = self.position, self.written
            self._write_checkpoint(self.durable, position, durable=False)
            self.output.write_at(written.length, b"".join(self._unwritten), sync=False)
            self.written = position
            self._unwritten.clear()
            self._unwritten_bytes = 0
        self._written_at = self._clock.now()

    def sync_due(self) -> bool:
        """Whether the pages taken since the last sync should be made durable now."""
        durability = self._durability
        return (
            self.position.pages - self.durable.pages >= durability.pages
            or self._clock.now() - self._synced_at >= durability.seconds
        )

    def sync(self) -> None:
        """Write what is left, then make it durable: the output, then the checkpoint naming it committed."""
        self.write()
        position = self.written
        self.output.sync()
        self._write_checkpoint(position)
        self.durable = position
        self._synced_at = self._clock.now()

    def settle(self) -> None:
        """Write and sync what was taken; if that fails, cut the file back to the last page written
        whole and sync that."""
        try:
            self.write()
        except OutputError:
            self._unwritten.clear()  # a resume fetches them again
            self._unwritten_bytes = 0
            self.position = self.written
        if self.output.size() > self.written.length:
            self.output.truncate(self.written.length)
        self.sync()

    def rebuild(self, lines: Iterable[bytes], pages: int) -> Position:
        """Replace the output with ``lines`` (whole lines, one or more per element) and mark it
        done, for an output derived from others.

        Unlike ``append`` the data goes first and the checkpoint last: until that checkpoint says
        done, a resume discards the output and derives it again (``Resumption.rebuildable``).
        """
        self.output.truncate(0)
        length, rows = 0, 0
        with _BackgroundDigest() as digest:
            for chunk in _chunks(lines, _REBUILD_CHUNK):
                self.output.write_at(length, chunk, sync=False)
                digest.update(chunk)
                rows += chunk.count(b"\n")
                length += len(chunk)
        self.output.write_at(length, b"")  # makes it all durable before the checkpoint says done
        done = Position(Cursor(step=1, done=True), length, digest.hexdigest(), rows, pages)
        self._write_checkpoint(done)
        self.position = self.written = self.durable = done
        self._digest = digest.sha256
        return done

    def _write_checkpoint(
        self, committed: Position, pending: Position | None = None, *, durable: bool = True
    ) -> None:
        checkpoint = Checkpoint(self.run, self.source, self._identity, committed, pending)
        checkpoint.write(self._checkpoint_path, durable=durable)

    def close(self) -> None:
        self.output.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _verified_position(output: OutputFile, checkpoint: Checkpoint) -> tuple[Position, hashlib._Hash]:
    """The checkpoint position the file is at (a page cut short is cut off), or a CheckpointError."""
    path, size = output.path, output.size()
    committed, latest = checkpoint.committed, checkpoint.latest
    advice = "it was changed after its checkpoint; restore it or start over with --overwrite"
    if size > latest.length:
        raise CheckpointError(
            f"{path} is longer ({size:,} bytes) than its checkpoint describes ({latest.length:,}): {advice}"
        )
    if size < committed.length:
        raise CheckpointError(
            f"{path} is shorter ({size:,} bytes) than its checkpoint describes "
            f"({committed.length:,}): rows are "
            f"missing; restore it or start over with --overwrite"
        )
    if checkpoint.pending is not None and size == checkpoint.pending.length:
        digest = output.digest_of_prefix(size)
        if digest.hexdigest() == checkpoint.pending.sha256:
            return checkpoint.pending, digest
    digest = output.digest_of_prefix(committed.length)
    if digest.hexdigest() != committed.sha256:
        raise CheckpointError(f"the rows in {path} differ from what its checkpoint describes: {advice}")
    if size > committed.length:
        output.truncate(committed.length)  # the page being written when the process stopped
    return committed, digest
