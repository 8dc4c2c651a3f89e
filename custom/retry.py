"""How long to wait before another attempt: exponential backoff with full jitter, and the server's
``Retry-After`` up to a cap. Used by the transport (API requests) and the token refresher (token
requests) alike.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import UTC

import attrs


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(
            f"RetryPolicy.{attribute.name} must be a non-negative number of seconds, got {value!r}"
        )


def _retry_count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"RetryPolicy.max_retries must be a non-negative integer, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry.

    The wait before retry ``n`` (0-based) is ``random() * min(backoff_cap, backoff_base * 2**n)``
    unless the server sent ``Retry-After``, which wins up to ``max_retry_after``: a longer
    ``Retry-After`` is not waited for, the attempt's outcome is final (``exceeds_cap``).
    """

    max_retries: int = attrs.field(default=5, validator=_retry_count)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_cap: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    def backoff(self, retry: int, random: Callable[[], float]) -> float:
        """The jittered wait before retry ``retry`` (0-based) when the server named none."""
        return random() * min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry, 64))

    def delay(self, retry: int, retry_after: float | None, random: Callable[[], float]) -> float:
        """The wait before retry ``retry``: the server's ``retry_after`` if it sent one, else backoff."""
        return retry_after if retry_after is not None else self.backoff(retry, random)

    def exceeds_cap(self, retry_after: float | None) -> bool:
        """Whether the server asked for a longer pause than this policy waits."""
        return retry_after is not None and retry_after > self.max_retry_after

    def allows_retry(self, retry: int) -> bool:
        """Whether retry ``retry`` (0-based) may still be made."""
        return retry < self.max_retries


DEFAULT_RETRY_POLICY = RetryPolicy()
# Token requests are on the path of every call: a few quick retries, and no long pauses.
TOKEN_RETRY_POLICY = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_cap=30.0, max_retry_after=30.0)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date; ``now`` is epoch
    seconds), or ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            seconds = when.timestamp() - now
        except (OverflowError, OSError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
