"""Any failure of any command as one line on stderr and an exit status.

2: the command or the files it names must change (bad flags, parameters or credentials missing, a
checkpoint that does not match, an output that would be overwritten). 1: the run failed (the API,
the network, the disk, another writer). 130: interrupted. Task groups raise exception groups; the
line names the first real error among them and how many others there were. ``--debug`` prints the
traceback first. Known secrets are scrubbed from both, whatever the exception text holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator

import attrs

from ..errors import AmperityError, ConfigurationError
from ..extract import ExtractionInputError, OutputLockedError
from ..secrets import Redactor

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_SPACE = re.compile(r"\s+")


class UsageError(Exception):
    """Wrong or missing command-line input: printed as one line, exit status 2."""


@attrs.frozen
class Failure:
    status: int
    line: str


def redactor_for(secrets: Iterable[str | None]) -> Redactor:
    """The library's redactor, knowing every secret the command may hold (each in all its forms)."""
    return Redactor(*(secret for secret in secrets if secret))


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; the exception itself otherwise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


def describe(exc: BaseException, *, resumable: bool = False) -> Failure:
    """The line and exit status for ``exc``; ``resumable``: the command can continue with --resume."""
    everything = leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in everything):
        hint = "; rerun with --resume to continue from the last checkpoint" if resumable else ""
        return Failure(EXIT_INTERRUPTED, "interrupted" + hint)
    real = [e for e in everything if not _is_cancellation(e)] or everything
    primary = real[0]
    status = _status(primary)
    line = _line(primary)
    others = len({_line(e) for e in real} - {line})
    if others:
        line += f" (and {others} other error{'s' if others > 1 else ''})"
    if (
        status == EXIT_FAILED
        and resumable
        and isinstance(primary, (AmperityError, OSError))
        and not isinstance(primary, OutputLockedError)
    ):
        line += "; what was written is intact: rerun with --resume to continue"
    return Failure(status, line)


def _status(exc: BaseException) -> int:
    if isinstance(exc, (UsageError, ConfigurationError, ExtractionInputError)):
        return EXIT_USAGE
    return EXIT_FAILED


def _line(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError):
        text = "standard output was closed before every row was written"
    elif isinstance(exc, (UsageError, AmperityError)):
        text = str(exc)
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        text = where + (exc.strerror or str(exc))
    else:
        text = f"{type(exc).__name__}: {exc} (unexpected; rerun with --debug for the traceback)"
    return _SPACE.sub(" ", text).strip() or type(exc).__name__


@contextlib.contextmanager
def quiet_library_output(redact: Redactor, *, debug: bool) -> Iterator[None]:
    """While a command runs: warnings as one redacted line each, the library's log records only
    from ERROR up (all of them with ``--debug``), redacted too. Restored afterwards."""
    logger = logging.getLogger("amperity_async")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_RedactingFilter(redact))
    saved_level, saved_propagate, saved_showwarning = logger.level, logger.propagate, warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        sys.stderr.write(f"warning: {redact.scrub(_SPACE.sub(' ', str(message)).strip())}\n")

    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.ERROR)
    logger.propagate = False
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved_showwarning
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._redact.scrub(record.getMessage()), None
        return True


def report(exc: BaseException, *, redact: Redactor, debug: bool, resumable: bool) -> int:
    """Print the failure (and with ``debug`` its traceback) on stderr; return the exit status."""
    failure = describe(exc, resumable=resumable)
    try:
        if debug:
            sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
        sys.stderr.write(f"error: {redact.scrub(failure.line)}\n")
        sys.stderr.flush()
    except OSError:
        pass  # stderr is gone too: the exit status is all that is left to say it
    return failure.status
