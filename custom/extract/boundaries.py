"""No item twice across a window boundary.

Consecutive windows share one instant: ``[a, b)`` and ``[b, c)``. A server that follows the
documented semantics puts an item at ``b`` in the second window only; one that treats ``*_to`` as
inclusive puts it in both. The guard remembers the keys of the items that could be on the boundary
and drops them from the next window:

- when the item schema has the window's timestamp field (``happened_from`` -> ``happened_at``),
  only items whose timestamp is exactly the window's end: a handful, whatever the window's size;
- otherwise, for lists answered in one response per window, every item of the window (bounded by
  that one response, which is in memory anyway).

Paginated lists with no such field are not guarded (their memory would grow with the window): the
server's half-open windows are relied upon there.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ..operations import OperationInfo
from ..validation import load_packaged_spec
from .windows import parse_timestamp

_encode = msgspec.json.Encoder().encode


@functools.cache
def _item_properties(schema: str) -> frozenset[str]:
    schemas = load_packaged_spec().get("components", {}).get("schemas", {})
    properties = (schemas.get(schema) or {}).get("properties") or {}
    return frozenset(properties)


def timestamp_field(op: OperationInfo, low: str) -> str | None:
    """The item field a ``*_from`` filter selects on, when the item schema has it."""
    if not low.endswith("_from") or op.item_schema is None:
        return None
    field = low[: -len("_from")] + "_at"
    return field if field in _item_properties(op.item_schema) else None


def item_key(op: OperationInfo, item: Any) -> str:
    """The item's id property where the schema has one, else a digest of the item as sent."""
    if op.item_key is not None and isinstance(item, Mapping):
        value = item.get(op.item_key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return f"{op.item_key}:{value}"
    return "sha256:" + hashlib.sha256(_encode(item)).hexdigest()


class BoundaryGuard:
    """Admits a window's items, dropping those the previous window already delivered."""

    def __init__(
        self,
        op: OperationInfo,
        field: str | None,
        *,
        remember_all: bool,
        previous: Iterable[str] = (),
        current: Iterable[str] = (),
    ) -> None:
        self._op = op
        self._field = field
        self._remember_all = remember_all and field is None
        self.previous: set[str] = set(previous)
        self.current: set[str] = set(current)
        self._end: datetime | None = None

    @property
    def active(self) -> bool:
        return self._field is not None or self._remember_all

    def enter(self, end: datetime, *, first: bool = False) -> None:
        """A window ending at ``end`` begins; unless it is the first, the last one's keys become the guard."""
        if not first:
            self.previous, self.current = self.current, set()
        self._end = end

    def admit(self, items: Sequence[Any]) -> list[Any]:
        if not self.active:
            return list(items)
        admitted: list[Any] = []
        for item in items:
            key = item_key(self._op, item)
            if key in self.previous or (self._remember_all and key in self.current):
                continue
            if self._remember_all or self._on_end(item):
                self.current.add(key)
            admitted.append(item)
        return admitted

    def _on_end(self, item: Any) -> bool:
        if self._field is None or self._end is None or not isinstance(item, Mapping):
            return False
        value = item.get(self._field)
        if not isinstance(value, str):
            return False
        try:
            return parse_timestamp(value, self._field) == self._end
        except ValueError:
            return False
