"""The tenant's request rate limits, as a strict server enforces them.

``sliding`` (default): a request is accepted when fewer than ``limit`` requests were accepted in
the second before it, so no 1-second interval, wherever it starts, holds more than ``limit``
accepted requests. ``fixed``: at most ``limit`` per calendar second (``floor(now)``), which lets
up to twice the limit through across a second boundary. Refused requests do not count: a client
that backs off is not punished for its earlier attempts.
"""

from __future__ import annotations

import math
from collections import deque

from .config import Clock


class WindowLimiter:
    def __init__(self, limit: int, window: str, clock: Clock) -> None:
        if window not in ("sliding", "fixed"):
            raise ValueError(f"rate window must be 'sliding' or 'fixed', got {window!r}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._second = -math.inf
        self._count = 0

    def allow(self) -> bool:
        now = self._clock()
        if self.window == "fixed":
            second = math.floor(now)
            if second != self._second:
                self._second, self._count = second, 0
            if self._count >= self.limit:
                return False
            self._count += 1
            return True
        accepted = self._accepted
        horizon = now - 1.0
        while accepted and accepted[0] <= horizon:
            accepted.popleft()
        if len(accepted) >= self.limit:
            return False
        accepted.append(now)
        return True
