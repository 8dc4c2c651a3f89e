"""What one extraction reads: an operation, its parameters, and the windows its answers come in.

A list whose cursor can be followed is read page by page. A list whose cursor is unusable answers
each filter window in one response, so it is read one request per window; a window longer than
the operation's documented maximum (``max_window_days``) is split into consecutive half-open
windows of at most that length.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import attrs

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import OperationInfo
from .boundaries import BoundaryGuard, timestamp_field
from .checkpoint import Cursor, Source
from .connection import Connection
from .windows import Window, format_timestamp, window_in, window_names


def canonical(value: Any) -> Any:
    """A JSON value that compares equal exactly when the parameter values do."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return canonical(to_dict())
    raise ConfigurationError(
        f"a parameter value of type {type(value).__name__} cannot be recorded in a checkpoint"
    )


@attrs.frozen
class Plan:
    op: OperationInfo
    args: tuple[Any, ...]
    params: Mapping[str, Any]
    names: tuple[str, str] | None
    """The window's parameters when the extraction is split into windows (else None)."""
    windows: tuple[Window, ...]
    max_items: int | None = None

    @classmethod
    def build(
        cls,
        op: OperationInfo,
        args: Sequence[Any] = (),
        params: Mapping[str, Any] | None = None,
        max_items: int | None = None,
    ) -> Plan:
        if not op.returns_list:
            raise ConfigurationError(
                f"{op.name} does not answer with a list of items; it cannot be extracted"
            )
        if max_items is not None and max_items < 0:
            raise ConfigurationError(f"max_items must be >= 0, got {max_items}")
        params = dict(params or {})
        missing = [name for name in op.required_query if name not in params]
        if missing:
            raise ConfigurationError(f"{op.name} requires " + ", ".join(missing))
        names = window_names(op, params)
        windows: tuple[Window, ...] = ()
        if op.max_window_days and names is not None and (names[0] in params or names[1] in params):
            windows = tuple(window_in(op, params, names).chunks(op.max_window_days))
        return cls(op, tuple(args), params, names if windows else None, windows, max_items)

    @property
    def steps(self) -> int:
        return max(1, len(self.windows))

    def params_for(self, step: int) -> dict[str, Any]:
        if not self.windows or self.names is None:
            return dict(self.params)
        low, high = self.names
        window = self.windows[step]
        return {**self.params, low: window.start, high: window.end}

    def source(self, where: AmperityClient | Connection, *, shards: int | None = None) -> Source:
        """What this plan reads from the tenant ``where`` (a client or a worker's connection) names."""
        return Source(
            tenant=where.tenant,
            base_url=where.base_url,
            api_version=dict(where.api_versions).get(self.op.api, ""),
            operation=self.op.operation_id,
            args=tuple(str(a) for a in self.args),
            params=canonical(self.params),
            max_items=self.max_items,
            shards=shards,
        )

    def guard(self, cursor: Cursor) -> BoundaryGuard:
        field = timestamp_field(self.op, self.names[0]) if self.names else None
        guard = BoundaryGuard(
            self.op,
            field,
            remember_all=not self.op.paginated,
            previous=cursor.previous_keys,
            current=cursor.current_keys,
        )
        if self.windows and cursor.step < len(self.windows):
            guard.enter(self.windows[cursor.step].end, first=True)
        return guard
