"""A worker process of a local multi-process extraction (``python -m`` this module).

Its parent (``processes``) writes one order on its stdin (a length, then the pickled order: the
shard specs, the budget, whether to send tracebacks) and keeps stdin open. The worker extracts the
specs concurrently with one client whose credentials it reads from its environment, and writes
JSON lines on stdout: progress, warnings, and at the end its report or its failure. When its stdin
closes (the parent stopped it, or died) it stops, leaving every output at a checkpoint.
Exit status: 0 done, 1 failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import pickle
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import BinaryIO, Literal

import anyio
import anyio.abc
import attrs
import msgspec

from ..errors import AmperityError, ConfigurationError
from .budgets import Budget
from .errors import ExtractionError, ExtractionInputError
from .files import ExtractStats
from .specs import ShardSpec, WorkReport, run_batch

MODULE = "amperity_async.custom.extract.worker"
LENGTH = struct.Struct(">Q")
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_PROGRESS_EVERY = 0.5  # seconds between progress lines


@attrs.frozen
class WorkerOrder:
    specs: tuple[ShardSpec, ...]
    budget: Budget
    tracebacks: bool = False


class _Line(msgspec.Struct, tag_field="t"):
    """A line on the worker's stdout."""


class Progress(_Line, tag="progress"):
    operation: str
    target: str
    rows: int
    pages: int


class Warned(_Line, tag="warning"):
    text: str


class Logged(_Line, tag="log"):
    level: int
    text: str


class Reported(_Line, tag="report"):
    pickled: str
    """The ``WorkReport``, pickled, in base64."""


class Failed(_Line, tag="failed"):
    kind: Literal["input", "run", "interrupted"]
    line: str
    traceback: str | None = None


LINES = msgspec.json.Decoder(Progress | Warned | Logged | Reported | Failed)
_encode = msgspec.json.Encoder().encode


class ParentGoneError(ExtractionError):
    """The worker's stdin closed: its parent stopped it or is gone."""


def encode_order(order: WorkerOrder) -> bytes:
    data = pickle.dumps(order)
    return LENGTH.pack(len(data)) + data


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise ParentGoneError("the parent closed the worker's input before sending its order")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_order(fd: int) -> WorkerOrder:
    (size,) = LENGTH.unpack(_read_exactly(fd, LENGTH.size))
    order = pickle.loads(_read_exactly(fd, size))  # from our own parent, over a private pipe
    if not isinstance(order, WorkerOrder):
        raise ConfigurationError(f"a worker's order must be a WorkerOrder, got {type(order).__name__}")
    return order


class _Reporter:
    """Writes the worker's lines to stdout; progress at most every ``_PROGRESS_EVERY`` seconds."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._latest: dict[str, ExtractStats] = {}
        self._sent = 0.0

    def send(self, line: _Line) -> None:
        self._out.write(_encode(line) + b"\n")
        self._out.flush()

    def progress(self, stats: ExtractStats) -> None:
        self._latest[stats.target] = stats
        now = time.monotonic()
        if now - self._sent >= _PROGRESS_EVERY:
            self._sent = now
            for latest in self._latest.values():
                self.send(Progress(latest.operation, latest.target, latest.rows, latest.pages))
            self._latest.clear()


class _Forward(logging.Handler):
    def __init__(self, reporter: _Reporter) -> None:
        super().__init__(logging.ERROR)
        self._reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self._reporter.send(Logged(record.levelno, record.getMessage()))


async def _watch_parent(fd: int) -> None:
    while True:
        await anyio.wait_readable(fd)
        if not os.read(fd, 4096):
            raise ParentGoneError(
                "the parent process stopped this worker (or is gone); its outputs are at a checkpoint"
            )


async def work(order: WorkerOrder, reporter: _Reporter, stdin: int) -> WorkReport:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_parent, stdin)
        report = await run_batch(order.specs, order.budget, on_page=reporter.progress)
        tg.cancel_scope.cancel()
    return report


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _is_cancellation(exc: BaseException) -> bool:
    trio = sys.modules.get("trio")
    return isinstance(exc, asyncio.CancelledError) or (trio is not None and isinstance(exc, trio.Cancelled))


def failure(exc: BaseException) -> Failed:
    """The one line (and kind) a failed worker reports; cancellations give way to their cause."""
    leaves = _leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        return Failed("interrupted", "interrupted")
    real = [e for e in leaves if not _is_cancellation(e)] or leaves
    first = next((e for e in real if not isinstance(e, ParentGoneError)), real[0])
    kind: Literal["input", "run"] = (
        "input" if isinstance(first, (ConfigurationError, ExtractionInputError)) else "run"
    )
    if isinstance(first, AmperityError):
        line = str(first)
    elif isinstance(first, OSError):
        line = f"{first.filename + ': ' if first.filename else ''}{first.strerror or first}"
    else:
        line = f"{type(first).__name__}: {first}"
    return Failed(kind, " ".join(line.split()))


def main(argv: Sequence[str] | None = None) -> int:
    reporter = _Reporter(sys.stdout.buffer)
    stdin = sys.stdin.fileno()
    tracebacks = False
    warnings.showwarning = lambda message, *_, **__: reporter.send(Warned(" ".join(str(message).split())))
    logger = logging.getLogger("amperity_async")
    logger.addHandler(_Forward(reporter))
    logger.propagate = False
    try:
        order = read_order(stdin)
        tracebacks = order.tracebacks
        report = anyio.run(work, order, reporter, stdin)
    except BaseException as exc:
        failed = failure(exc)
        if tracebacks:
            failed = Failed(failed.kind, failed.line, "".join(traceback.format_exception(exc)))
        try:
            reporter.send(failed)
        except OSError:
            pass  # the parent is gone: the exit status is all there is
        return {"input": EXIT_USAGE, "run": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[failed.kind]
    reporter.send(Reported(base64.b64encode(pickle.dumps(report)).decode("ascii")))
    return 0


if __name__ == "__main__":
    # Run as the module the parent's pickles name, not as a second copy called __main__.
    from amperity_async.custom.extract.worker import main as _main

    status = _main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every output is closed and durable and the report is sent: tearing down a few hundred
    # modules would only keep the parent waiting (about 0.4 s here).
    os._exit(status)
