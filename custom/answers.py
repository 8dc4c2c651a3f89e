"""What a call returns when the operation answers without a body."""

from __future__ import annotations

import attrs


@attrs.frozen
class EmptyAnswer:
    """A 2xx answer without a body: its status is the answer.

    The Real-time API's send-event answers 202 when the event was published and 204 when the
    stream is set to drop events (nothing was published).
    """

    status_code: int
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300
