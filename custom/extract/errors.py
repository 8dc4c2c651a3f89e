"""Why an extraction refused to start or could not go on.

Every refusal names the file and what to do about it. Refusals that the user's own command or
files caused (a checkpoint that does not match, an output that would be overwritten) are
``ExtractionInputError``; a run that started and failed is plain ``ExtractionError``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AmperityError


class ExtractionError(AmperityError):
    """An extraction cannot start or continue."""


class ExtractionInputError(ExtractionError):
    """The command or the files it names cannot be used as they are (fix the command, then rerun)."""


class CheckpointError(ExtractionInputError):
    """A checkpoint does not describe the output, the tenant, the parameters or the run it is asked
    to resume."""


class OutputExistsError(ExtractionInputError):
    """The output already holds rows and the command said neither ``--resume`` nor ``--overwrite``."""


class OutputLockedError(ExtractionError):
    """Another process is writing the same output."""


class OutputError(ExtractionError):
    """The output (or its checkpoint) cannot be read or written: a full or read-only disk, a folder."""

    def __init__(self, path: Path, action: str, error: OSError) -> None:
        self.path = path
        self.errno = error.errno
        reason = error.strerror or str(error)
        super().__init__(f"cannot {action} {path}: {reason}")


class WorkerError(ExtractionError):
    """A worker process failed, was killed or exited early; the message names it and its reason."""


class WorkerInputError(ExtractionInputError):
    """A worker process refused its shards as bad input (a checkpoint of another run, a missing
    credential)."""
