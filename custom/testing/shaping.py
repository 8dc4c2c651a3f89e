"""How much of an item an answer shows: a documented view's fields, and nulls where fields are absent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .spec import Operation, Schema

Shape = Callable[[dict[str, Any]], dict[str, Any]]


def with_nulls(value: Any, schema: Schema) -> Any:
    """``value`` with ``null`` for every property its schema defines and it lacks, at every depth.

    What some servers send instead of leaving a field out: a running workflow's ``ended_at: null``.
    """
    if isinstance(value, dict):
        props: Mapping[str, Schema] = schema.get("properties") or {}
        filled = {name: with_nulls(member, props.get(name) or {}) for name, member in value.items()}
        for name in props:
            filled.setdefault(name, None)
        return filled
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [with_nulls(member, items) for member in value]
    return value


def view_fields(op: Operation, plain: Mapping[str, str]) -> frozenset[str] | None:
    """The fields the request's views leave in the answer (None: all of them)."""
    chosen: frozenset[str] | None = None
    for view in op.views:
        fields = view.fields_for(plain.get(view.param))
        if fields is not None:
            chosen = fields if chosen is None else chosen & fields
    return chosen


def item_shape(schema: Schema, *, nulls: bool, fields: frozenset[str] | None) -> Shape | None:
    """What to do to each item before it is answered (None: send it as generated)."""
    if not nulls and fields is None:
        return None

    def shape(item: dict[str, Any]) -> dict[str, Any]:
        shaped: dict[str, Any] = with_nulls(item, schema) if nulls else item
        if fields is not None:
            shaped = {name: member for name, member in shaped.items() if name in fields}
        return shaped

    return shape
