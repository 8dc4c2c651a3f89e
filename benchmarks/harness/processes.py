"""Child processes of the harness: CPU pinning, CPU time and memory per process, bounded reads.

Every measurement reads the CPU time of one process (user + system, all its threads), which other
work on the machine hardly changes, and memory as the kernel counts it. Reads from children are
bounded: a child that stops answering is killed and named, never waited on forever.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .settings import ROOT, RUN_SCRIPT


class BenchmarkError(RuntimeError):
    """A benchmark could not be measured (a child failed, hung, or produced wrong output)."""


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the servers and the measured clients run on (None: no pinning)."""

    server: frozenset[int] | None
    client: frozenset[int] | None
    # What the harness could use before pinning itself: a benchmark of several processes
    # (benchmarks/workers.py) is given all of it again.
    every: frozenset[int] | None = None

    @classmethod
    def detect(cls) -> CpuPlan:
        """One core for the servers and one for the clients, when there are two or more."""
        try:
            available = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return cls(None, None)
        if len(available) < 2:
            return cls(None, None)
        return cls(frozenset({available[0]}), frozenset({available[1]}), frozenset(available))


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int | str, field: str) -> float | None:
    """A memory figure (kB) of /proc/PID/status in MB; None where there is no /proc or it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a running process now."""
    return _status_mb(pid, "VmRSS")


def process_peak_rss_mb(pid: int) -> float | None:
    """The most resident memory a running process has had since it started its program.

    Not ``ru_maxrss``: Linux carries the parent's peak over into a child at exec, so a child of a
    big harness would report the harness's memory as its own.
    """
    return _status_mb(pid, "VmHWM")


def own_peak_rss_mb() -> float:
    peak = _status_mb("self", "VmHWM")
    return peak if peak is not None else _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _maxrss_mb(maxrss: int) -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


class LineReader:
    """Lines from a child's pipe, each read with a deadline (the pipe is read unbuffered)."""

    def __init__(self, stream: IO[Any], what: str) -> None:
        self._fd = stream.fileno()
        self._what = what
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline; None at end of file; BenchmarkError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise BenchmarkError(f"{self._what} said nothing for {timeout:g} s")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                if self._buffer:
                    line, self._buffer = bytes(self._buffer), bytearray()
                    return line.decode()
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()

    def close(self) -> None:
        self._selector.close()


def stop_process(proc: subprocess.Popen[Any], first: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Ask a child to stop with ``first``; kill it if it is still there after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(first)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@dataclass(frozen=True)
class OutputMark:
    """A moment at which a child's output had grown: its time, its CPU time, and its output's size."""

    seconds: float
    """Since the child was started."""
    cpu_seconds: float
    """The child's CPU time then (clock ticks: 10 ms steps on Linux)."""
    output_bytes: int


@dataclass
class ChildUsage:
    """What the kernel counted for one finished child: exit status, CPU time, peak memory."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    """Its own high-water mark (VmHWM), last read at most ``sample_every`` seconds before it exited."""
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, MB) read every ``sample_every`` seconds while it ran."""
    output_marks: list[OutputMark] = field(default_factory=list)
    """The first moment its output was seen, then every sample at which it had grown."""


# How often a child's output file is looked at until its first bytes are there (start-up only).
_FIRST_OUTPUT_POLL = 0.005


def watch_child(
    proc: subprocess.Popen[Any],
    started: float,
    *,
    timeout: float,
    sample_every: float = 0.1,
    drain: IO[bytes] | None = None,
    sink: IO[bytes] | None = None,
    output_file: Path | None = None,
) -> ChildUsage:
    """Wait for ``proc`` (reaping it with wait4 for its own CPU time and peak RSS), sampling its
    memory meanwhile; ``drain``, its stdout pipe, is copied to ``sink`` as it comes. Its output, on
    the pipe or in ``output_file``, is marked with the time and the child's CPU time when it is first
    seen and whenever it has grown at a sample, so that the work between two marks can be timed.

    The wait wakes the moment the child exits (a pidfd, where Linux has them), not at the next sample.
    """
    selector = selectors.DefaultSelector()
    exited = _exit_signal(proc.pid)
    if exited is not None:
        selector.register(exited, selectors.EVENT_READ)
    pipe = drain.fileno() if drain is not None else None
    if pipe is not None:
        os.set_blocking(pipe, False)
        selector.register(pipe, selectors.EVENT_READ)
    samples: list[tuple[float, float]] = []
    peak: float | None = None
    marks: list[OutputMark] = []
    copied = 0
    deadline = started + timeout
    next_sample = time.perf_counter()
    try:
        while True:
            wake = next_sample if marks or output_file is None else time.perf_counter() + _FIRST_OUTPUT_POLL
            for key, _ in selector.select(max(0.0, min(wake, next_sample) - time.perf_counter())):
                if key.fd == pipe:
                    more, still_open = _copy_available(pipe, sink)
                    copied += more
                    if not still_open:
                        selector.unregister(pipe)
                        pipe = None
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                wall = time.perf_counter() - started
                break
            now = time.perf_counter()
            if not marks or now >= next_sample:
                written = copied if output_file is None else _size(output_file)
                cpu = (
                    process_cpu_seconds(proc.pid)
                    if written > (marks[-1].output_bytes if marks else 0)
                    else None
                )
                if cpu is not None:
                    marks.append(OutputMark(now - started, cpu, written))
            if now >= next_sample:
                rss, high = process_rss_mb(proc.pid), process_peak_rss_mb(proc.pid)
                if rss is not None:
                    samples.append((now - started, rss))
                if high is not None:
                    peak = high if peak is None else max(peak, high)
                next_sample = now + sample_every
            if now > deadline:
                proc.kill()
                proc.wait()
                raise BenchmarkError(f"`{_command(proc)}` did not finish within {timeout:g} s")
        while pipe is not None:  # what was still in the pipe when it exited
            if time.perf_counter() > deadline:
                raise BenchmarkError(f"the output of `{_command(proc)}` did not end")
            selector.select(1.0)
            if not _copy_available(pipe, sink)[1]:
                pipe = None
    finally:
        selector.close()
        if exited is not None:
            os.close(exited)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    return ChildUsage(
        returncode=proc.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        # The high-water mark as last read before it exited; ru_maxrss only where there is no /proc.
        peak_rss_mb=peak if peak is not None else _maxrss_mb(usage.ru_maxrss),
        rss_samples=samples,
        output_marks=marks,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _command(proc: subprocess.Popen[Any]) -> str:
    args = proc.args
    return " ".join(map(str, args)) if isinstance(args, list | tuple) else str(args)


def _exit_signal(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (None where the OS has none)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _copy_available(pipe: int, sink: IO[bytes] | None) -> tuple[int, bool]:
    """Copy what the pipe holds now: how many bytes, and whether it is still open."""
    copied = 0
    while True:
        try:
            chunk = os.read(pipe, 1 << 20)
        except BlockingIOError:
            return copied, True
        if not chunk:
            return copied, False
        copied += len(chunk)
        if sink is not None:
            sink.write(chunk)


def spawn_worker(
    args: Sequence[str], cpus: frozenset[int] | None, stderr_path: Path, *, stdin: bool = False
) -> subprocess.Popen[bytes]:
    """``benchmarks/run.py`` in a fresh interpreter, pinned to ``cpus``, its stderr kept in a file."""
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(RUN_SCRIPT), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
        )
    # Pinned while it is still importing; nothing is measured before its warm-up is over.
    pin(proc.pid, cpus)
    return proc


def run_one_shot(
    kind: str, spec: dict[str, Any], cpus: frozenset[int] | None, scratch: Path, timeout: float = 600
) -> dict[str, Any]:
    """One measurement in a fresh interpreter; the JSON object it prints last."""
    stderr_path = scratch / f"{kind}-{time.monotonic_ns()}.stderr"
    proc = spawn_worker(["--worker", kind, json.dumps(spec)], cpus, stderr_path)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchmarkError(f"the {kind} worker did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise BenchmarkError(f"the {kind} worker failed (exit {proc.returncode}):\n{tail(stderr_path)}")
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise BenchmarkError(f"the {kind} worker printed no result:\n{tail(stderr_path)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
