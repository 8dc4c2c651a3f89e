"""Injected faults, drawn from a seeded random source so a run can be repeated."""

from __future__ import annotations

import random

from .config import FakeTenantConfig

DROP, ERROR_500, ERROR_503 = "drop", 500, 503


class FaultInjector:
    def __init__(self, config: FakeTenantConfig) -> None:
        self._config = config
        self._dice = random.Random(f"faults:{config.seed}")
        self._started_at = config.clock()
        self._revoked_by_count = False
        self._revoked_by_time = False

    @property
    def active(self) -> bool:
        c = self._config
        return bool(c.error_rate or c.drop_rate or c.latency or c.latency_jitter)

    def outcome(self) -> str | int | None:
        """What happens to the next API request instead of an answer: a drop, a 5xx, or nothing."""
        c = self._config
        roll = self._dice.random()
        if roll < c.drop_rate:
            return DROP
        if roll < c.drop_rate + c.error_rate:
            return ERROR_500 if self._dice.random() < 0.5 else ERROR_503
        return None

    def delay(self) -> float:
        c = self._config
        return c.latency + (self._dice.random() * c.latency_jitter if c.latency_jitter else 0.0)

    def should_revoke(self, requests_so_far: int) -> bool:
        """Whether the scheduled revocation falls due now (each schedule fires once)."""
        c = self._config
        due = False
        if (
            c.revoke_after_requests is not None
            and not self._revoked_by_count
            and requests_so_far >= c.revoke_after_requests
        ):
            self._revoked_by_count = due = True
        if (
            c.revoke_after_seconds is not None
            and not self._revoked_by_time
            and c.clock() - self._started_at >= c.revoke_after_seconds
        ):
            self._revoked_by_time = due = True
        return due
