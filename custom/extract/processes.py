"""Shard specs run by worker processes on this machine: every core, one budget.

``run_in_processes(specs, workers=N, setup=...)`` deals the specs to ``N`` worker processes
(``worker``), each API's specs in turn so that the heavy lists spread evenly, and waits for all
of them. Each worker extracts its specs concurrently with one client; ``setup`` says which budget
they share (a ``LocalBudget`` served by this process, or a ``RedisBudget``) and the environment
they start with, which is where their credentials come from (never a pickled spec).

A worker that fails, is killed or exits early fails the run: the others are stopped (their stdin
is closed, so they stop at a checkpoint; killed if they do not within ``STOP_GRACE`` seconds) and
the first failure is raised as ``WorkerError`` (``WorkerInputError`` for bad input), naming the
worker and its own one-line reason. Everything written stays resumable.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import pickle
import signal
import sys
import warnings
from collections import deque
from collections.abc import Mapping, Sequence

import anyio
import anyio.abc
import attrs
import msgspec

from .budgets import Budget
from .errors import WorkerError, WorkerInputError
from .files import ExtractStats, ProgressHook
from .specs import ShardSpec, WorkReport, combined
from .worker import LINES, MODULE, Failed, Logged, Progress, Reported, Warned, WorkerOrder, encode_order

STOP_GRACE = 15.0
"""Seconds a worker asked to stop may take to reach a checkpoint before it is killed."""
_STDERR_LINES = 20
logger = logging.getLogger("amperity_async.workers")


class WorkerWarning(UserWarning):
    """A warning a worker process raised, passed on by its parent."""


@attrs.frozen
class WorkerSetup:
    """What every worker process gets besides its specs."""

    budget: Budget
    env: Mapping[str, str] = attrs.field(repr=False)
    """The workers' whole environment (credentials included: read there, never pickled)."""
    tracebacks: bool = False


class _RemoteTraceback(Exception):
    """A worker's traceback, as the cause of the error its parent raises (shown with --debug)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


def deal(specs: Sequence[ShardSpec], workers: int) -> list[list[ShardSpec]]:
    """The specs of each of ``workers`` workers: each API's specs dealt out in turn."""
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    by_api: dict[str, list[ShardSpec]] = {}
    for spec in specs:
        by_api.setdefault(spec.operation_info().api, []).append(spec)
    hands: list[list[ShardSpec]] = [[] for _ in range(workers)]
    turn = 0
    for group in by_api.values():
        for spec in group:
            hands[turn % workers].append(spec)
            turn += 1
    return hands


async def run_in_processes(
    specs: Sequence[ShardSpec], *, workers: int, setup: WorkerSetup, on_page: ProgressHook | None = None
) -> WorkReport:
    """Every spec, by ``workers`` processes (fewer when there are fewer specs)."""
    reports: list[WorkReport] = []
    hands = [hand for hand in deal(specs, workers) if hand]
    async with anyio.create_task_group() as tg:
        for index, hand in enumerate(hands, start=1):
            tg.start_soon(_run_worker, index, hand, setup, on_page, reports)
    return WorkReport(tuple(s for r in reports for s in r.stats), combined(r.requests for r in reports))


async def _run_worker(
    index: int,
    specs: list[ShardSpec],
    setup: WorkerSetup,
    on_page: ProgressHook | None,
    reports: list[WorkReport],
) -> None:
    command = [sys.executable, "-P", "-m", MODULE]
    process = await anyio.open_process(command, env=dict(setup.env))
    try:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        await process.stdin.send(encode_order(WorkerOrder(tuple(specs), setup.budget, setup.tracebacks)))
        errors: deque[str] = deque(maxlen=_STDERR_LINES)
        outcome: list[Reported | Failed] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect_stderr, process.stderr, errors)
            await _follow(process.stdout, on_page, outcome)
        status = await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)
    _settle(index, specs, status, outcome, errors, reports)


async def _follow(
    stdout: anyio.abc.ByteReceiveStream, on_page: ProgressHook | None, outcome: list[Reported | Failed]
) -> None:
    pending = b""
    async for chunk in stdout:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                message = LINES.decode(line)
            except msgspec.DecodeError:
                logger.warning("a worker wrote something unexpected: %.200r", line)
                continue
            if isinstance(message, Progress):
                if on_page is not None:
                    on_page(ExtractStats(message.operation, message.target, message.rows, message.pages))
            elif isinstance(message, Warned):
                warnings.warn(message.text, WorkerWarning, stacklevel=1)
            elif isinstance(message, Logged):
                logger.log(message.level, "%s", message.text)
            else:
                outcome.append(message)


async def _collect_stderr(stderr: anyio.abc.ByteReceiveStream, lines: deque[str]) -> None:
    async for chunk in stderr:
        lines.extend(line for line in chunk.decode("utf-8", "replace").splitlines() if line.strip())


async def _stop(process: anyio.abc.Process) -> None:
    """Close the worker's stdin (its signal to stop), wait for it a while, then kill it."""
    if process.stdin is not None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(STOP_GRACE):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    await process.aclose()


def _settle(
    index: int,
    specs: Sequence[ShardSpec],
    status: int,
    outcome: Sequence[Reported | Failed],
    errors: Sequence[str],
    reports: list[WorkReport],
) -> None:
    """The worker's report, or the error its end calls for."""
    message = outcome[-1] if outcome else None
    if isinstance(message, Reported) and status == 0:
        report = pickle.loads(base64.b64decode(message.pickled))  # our own child's, over a private pipe
        if isinstance(report, WorkReport):
            reports.append(report)
            return
    what = f"worker {index} ({_outputs(specs)})"
    if isinstance(message, Failed):
        cause = _RemoteTraceback(message.traceback) if message.traceback else None
        error_type = WorkerInputError if message.kind == "input" else WorkerError
        raise error_type(f"{what}: {message.line}") from cause
    if status < 0:
        try:
            reason = f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            reason = f"was killed by signal {-status}"
    else:
        reason = f"exited with status {status}"
    last = f": {errors[-1]}" if errors else ""
    raise WorkerError(f"{what} {reason} before it finished{last}")


def _outputs(specs: Sequence[ShardSpec]) -> str:
    names = [spec.out.name for spec in specs]
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])} and {len(names) - 2} more"
