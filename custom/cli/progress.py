"""What a running extraction shows: a one-line progress display, and a summary table at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import attrs

from ..extract import ExtractStats
from ..transport import RequestCounts, TransportStats


def _stderr() -> TextIO:
    return sys.stderr


@attrs.define
class Progress:
    """A one-line progress display on stderr (only on a terminal), refreshed at most twice a second.

    ``requests``: the counters to show (the client's), or None where they are not known as the
    run goes (worker processes report theirs at the end)."""

    requests: Callable[[], RequestCounts] | None = None
    stream: TextIO = attrs.field(factory=_stderr)
    started: float = attrs.field(factory=time.monotonic)
    _last: float = 0.0
    rows: int = 0
    pages: int = 0

    def update(self, rows: int, pages: int) -> None:
        self.rows, self.pages = rows, pages
        now = time.monotonic()
        if self.stream.isatty() and now - self._last >= 0.5:
            self._last = now
            self.stream.write("\r" + self.line() + " ")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        if self.requests is None:
            return (
                f"{self.rows:,} items, {self.pages:,} pages, "
                f"{self.pages / elapsed:,.1f} pages/s, {elapsed:,.1f}s"
            )
        stats = self.requests()
        return (
            f"{self.rows:,} items, {self.pages:,} pages, {stats.requests / elapsed:,.1f} req/s, "
            f"{stats.retries} retries, {stats.rate_limited} 429s, {elapsed:,.1f}s"
        )

    def tracker(self) -> Callable[[ExtractStats], None]:
        """A progress hook for extractions of several outputs at once: shows their sum."""
        latest: dict[str, ExtractStats] = {}

        def update(stats: ExtractStats) -> None:
            latest[stats.target] = stats
            self.update(sum(s.rows for s in latest.values()), sum(s.pages for s in latest.values()))

        return update

    def finish(self) -> None:
        if self.stream.isatty():
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()


def summary_table(rows: Sequence[ExtractStats], total: TransportStats) -> str:
    """Per operation (its files added up): rows, pages, seconds, requests/s, retries, 429s;
    ``total``: the request counters of every client that did the work."""
    header = ("operation", "files", "rows", "pages", "seconds", "req/s", "retries", "429s")
    grouped: dict[str, list[ExtractStats]] = {}
    for stat in rows:
        grouped.setdefault(stat.operation, []).append(stat)
    per_op = total.by_operation
    lines = [header]
    for name, stats in sorted(grouped.items()):
        counters = per_op.get(name)
        requests = counters.requests if counters is not None else sum(s.pages for s in stats)
        seconds = max(max(s.seconds for s in stats), 1e-9)
        lines.append(
            (
                name,
                str(len(stats)),
                f"{sum(s.rows for s in stats):,}",
                f"{sum(s.pages for s in stats):,}",
                f"{seconds:.2f}",
                f"{requests / seconds:.1f}",
                str(counters.retries if counters else 0),
                str(counters.rate_limited if counters else 0),
            )
        )
    wall = max((s.seconds for s in rows), default=0.0)
    lines.append(
        (
            "total",
            str(len(rows)),
            f"{sum(s.rows for s in rows):,}",
            f"{sum(s.pages for s in rows):,}",
            f"{wall:.2f}",
            f"{total.requests / max(wall, 1e-9):.1f}",
            str(total.retries),
            str(total.rate_limited),
        )
    )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for index, row in enumerate(lines):
        out.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0 or index == len(lines) - 2:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
