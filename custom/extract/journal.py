"""An output file and the checkpoint that vouches for it: starting, resuming, appending.

Starting fresh removes the old checkpoint before the output is emptied, so no later ``--resume``
can trust a checkpoint of rows that are gone. Resuming checks the checkpoint against the source,
the run and the file (identity, length, sha256 of the bytes) and refuses with one sentence saying
what differs and what to do. Appending writes the checkpoint naming the page as pending first and
the page second, both durable before the next page; settling marks the last page committed (and
cuts off a page whose write failed).
Every method blocks: the extraction calls them in a worker thread.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from .checkpoint import Checkpoint, Cursor, Position, Source, checkpoint_path
from .errors import CheckpointError, OutputExistsError
from .output import OutputFile, remove

_REBUILD_CHUNK = 1 << 20


def new_run_id() -> str:
    return uuid.uuid4().hex


@attrs.frozen
class Resumption:
    """What the caller asked for: resume or not, overwrite or not, and which run the output must belong to."""

    resume: bool = False
    overwrite: bool = False
    run: str | None = None
    rebuildable: bool = False
    """The output is derived from other files (merged shards): unfinished, it may be rebuilt from scratch."""


class Journal:
    """``with Journal.begin(out, source, how) as journal``: the output locked, at a verified position."""

    def __init__(self, output: OutputFile, run: str, source: Source, position: Position, digest: hashlib._Hash) -> None:
        self.output = output
        self.run = run
        self.source = source
        self.position = position
        self._digest = digest
        self._checkpoint_path = checkpoint_path(output.path)

    @property
    def path(self) -> Path:
        return self.output.path

    @classmethod
    def begin(
        cls, path: Path, source: Source, how: Resumption, *, before_start: Callable[[], None] | None = None
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
        journal = cls(output, how.run or new_run_id(), source, Position.empty(), hashlib.sha256())
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
            return cls(output, checkpoint.run, source, Position.empty(), hashlib.sha256())
        position, digest = _verified_position(output, checkpoint)
        return cls(output, checkpoint.run, source, position, digest)

    def append(self, data: bytes, cursor: Cursor, rows: int, pages: int = 1) -> Position:
        """Write the checkpoint naming the state after ``data`` as pending, then ``data``; return that state."""
        committed = self.position
        digest = self._digest.copy()
        digest.update(data)
        pending = Position(cursor, committed.length + len(data), digest.hexdigest(), committed.rows + rows,
                           committed.pages + pages)
        self._write_checkpoint(committed, pending)
        if data:
            self.output.write_at(committed.length, data)
        self.position, self._digest = pending, digest
        return pending

    def settle(self) -> None:
        """Cut off what a failed write left past the last complete page, and commit that page."""
        if self.output.size() > self.position.length:
            self.output.truncate(self.position.length)
        self._write_checkpoint(self.position)

    def rebuild(self, lines: Iterable[bytes], pages: int) -> Position:
        """Replace the output with ``lines`` (whole lines, one or more per element) and mark it
        done, for an output derived from others.

        Unlike ``append`` the data goes first and the checkpoint last: until that checkpoint says
        done, a resume discards the output and derives it again (``Resumption.rebuildable``).
        """
        self.output.truncate(0)
        digest, length, rows, buffer = hashlib.sha256(), 0, 0, bytearray()
        for line in lines:
            buffer += line
            rows += line.count(b"\n")
            if len(buffer) >= _REBUILD_CHUNK:
                self.output.write_at(length, bytes(buffer), sync=False)
                digest.update(buffer)
                length += len(buffer)
                buffer.clear()
        self.output.write_at(length, bytes(buffer))
        digest.update(buffer)
        length += len(buffer)
        done = Position(Cursor(step=1, done=True), length, digest.hexdigest(), rows, pages)
        self._write_checkpoint(done)
        self.position, self._digest = done, digest
        return done

    def _write_checkpoint(self, committed: Position, pending: Position | None = None) -> None:
        Checkpoint(self.run, self.source, self.output.identity, committed, pending).write(self._checkpoint_path)

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
            f"{path} is shorter ({size:,} bytes) than its checkpoint describes ({committed.length:,}): rows are "
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
