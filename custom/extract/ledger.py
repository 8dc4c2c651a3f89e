"""The window guard of a budget whose grants are spent in other processes.

A grant made here is spent later, elsewhere: after the message carrying it crossed a socket and
the worker's event loop got round to it. So the ledger does not count a grant at the moment it is
made. A grant *out* (made, its spend not yet reported) counts in every window; once the worker
reports when it spent it, it becomes a *point* at that time, and a grant handed back unspent
leaves the ledger. A new grant is made only when the points of the last ``seconds`` plus the
grants out leave room for it.

Why that keeps every window to ``count``: a grant made at ``now`` is spent at some ``s >= now``.
Any ``seconds``-long window holding ``s`` starts after ``now - seconds``, so the points it can
hold are among those counted at ``now`` (points lie at or before the moment they are reported),
and every grant out then was counted too. Grants made later are checked the same way, seeing
this one as out or as its point. A worker that vanishes with grants out has them counted as
spent when it is noticed gone: a moment no earlier than any real spend, so later windows stay
honest.
"""

from __future__ import annotations

import heapq
import itertools

from ..errors import ConfigurationError

_EPSILON = 1e-9


class WindowLedger:
    """At most ``count`` spends in any ``seconds``-long interval, counted on reported spend times.

    Times are readings of one monotonic clock shared by every process (``time.monotonic`` is
    system-wide on Linux, macOS and Windows), so workers report them as they read them.
    """

    def __init__(self, count: int, seconds: float) -> None:
        if count < 1 or not seconds > 0:
            raise ConfigurationError(
                f"a window holds count >= 1 grants over seconds > 0, got ({count}, {seconds})"
            )
        self.count = count
        self.seconds = seconds
        self._points: list[float] = []  # a min-heap of spend times
        self._out: dict[int, float] = {}  # ticket -> when it was granted
        self._tickets = itertools.count(1)

    @property
    def out(self) -> int:
        return len(self._out)

    def _prune(self, now: float) -> None:
        horizon = now - self.seconds
        points = self._points
        while points and points[0] <= horizon + _EPSILON:
            heapq.heappop(points)

    def in_window(self, now: float) -> int:
        """Spends that count at ``now``: the points of the last ``seconds`` and the grants out."""
        self._prune(now)
        return len(self._points) + len(self._out)

    def due(self, now: float, n: int = 1) -> float | None:
        """When ``n`` more grants fit: ``now`` or earlier if they do already; None when only a
        report of grants out (or their return) can make room."""
        over = self.in_window(now) + n - self.count
        if over <= 0:
            return now
        if over > len(self._points):
            return None
        return heapq.nsmallest(over, self._points)[-1] + self.seconds

    def grant(self, now: float) -> int:
        """Record a grant made at ``now`` (the caller checked ``due``); its ticket."""
        ticket = next(self._tickets)
        self._out[ticket] = now
        return ticket

    def spent(self, ticket: int, at: float, now: float) -> None:
        """The grant ``ticket`` was spent at ``at`` (kept between its grant and ``now``)."""
        granted = self._out.pop(ticket, None)
        if granted is not None:
            heapq.heappush(self._points, min(max(at, granted), now))

    def returned(self, ticket: int) -> None:
        """The grant was handed back unspent."""
        self._out.pop(ticket, None)

    def abandoned(self, tickets: set[int], now: float) -> None:
        """Their holder is gone: count them as spent now, the latest they could have been."""
        for ticket in tickets:
            self.spent(ticket, now, now)
