"""Time windows: parsing, half-open splitting, and the windows an operation documents.

A window is half-open, ``[start, end)``, like Amperity's ``*_from`` (inclusive) and ``*_to``
(exclusive) filters: consecutive windows share a boundary instant and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from ..errors import ConfigurationError
from ..operations import OperationInfo

ALL_HISTORY = timedelta(days=365 * 30)
"""How far back a required window reaches when nobody gave one and no maximum is documented."""
CLOCK_SKEW = timedelta(days=1)
"""A required window with no documented maximum ends this far after now, so no late item is missed."""


def parse_timestamp(value: str, what: str) -> datetime:
    """ISO-8601, full or partial (``2026-04-01``); no offset means UTC, as Amperity documents."""
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(
            f"{what}={value!r} is not an ISO-8601 timestamp (e.g. 2026-04-01T00:00:00Z)"
        ) from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def format_timestamp(stamp: datetime) -> str:
    return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


@attrs.frozen
class Window:
    """``[start, end)``: items at ``start`` are in, items at ``end`` belong to the next window."""

    start: datetime
    end: datetime

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise ConfigurationError(
                f"the time window is empty: {format_timestamp(self.start)} "
                f"is not before {format_timestamp(self.end)}"
            )

    def split(self, parts: int) -> list[Window]:
        """``parts`` windows of (nearly) equal length, on whole seconds where the window allows."""
        if parts < 1:
            raise ConfigurationError(f"a window splits into 1 or more parts, not {parts}")
        step = (self.end - self.start) / parts
        if step >= timedelta(seconds=1):
            step = timedelta(seconds=math.floor(step.total_seconds()))
        bounds = [self.start + step * i for i in range(parts)] + [self.end]
        return [Window(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    def chunks(self, days: int) -> list[Window]:
        """Consecutive windows of at most ``days`` days covering this one (the last may be shorter)."""
        if days < 1:
            raise ConfigurationError(f"a window chunk is 1 or more days, not {days}")
        size = timedelta(days=days)
        windows: list[Window] = []
        start = self.start
        while start < self.end:
            end = min(start + size, self.end)
            windows.append(Window(start, end))
            start = end
        return windows


def window_names(op: OperationInfo, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """The operation's ``(*_from, *_to)`` pair the parameters use (or its first), if it has one."""
    for low, high in op.time_windows:
        if low in params or high in params:
            return low, high
    return op.time_windows[0] if op.time_windows else None


def window_in(op: OperationInfo, params: Mapping[str, Any], names: tuple[str, str]) -> Window:
    """The window the parameters give; both bounds must be there."""
    low, high = names
    if low not in params or high not in params:
        raise ConfigurationError(f"{op.name} needs both --param {low}=... and --param {high}=... here")
    start, end = params[low], params[high]
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise ConfigurationError(f"{op.name}: {low} and {high} must be timestamps")
    return Window(start, end)


def required_windows(op: OperationInfo) -> list[tuple[str, str]]:
    return [
        (low, high) for low, high in op.time_windows if low in op.required_query or high in op.required_query
    ]


def documented_window(op: OperationInfo, now: datetime) -> Window:
    """The window to use when a required one is not given: the documented maximum back from now
    (e.g. "the previous 7 days"), else all history."""
    if op.max_window_days:
        end = now.replace(microsecond=0) + (timedelta(seconds=1) if now.microsecond else timedelta())
        return Window(end - timedelta(days=op.max_window_days), end)
    end = now.replace(microsecond=0) + CLOCK_SKEW
    return Window(end - ALL_HISTORY, end)
