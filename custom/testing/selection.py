"""Which operations a per-operation setting names, checked against the served spec.

Settings name operations by operationId (``list-segment``) or by the generated function's name
(``list_segment``); ``*`` stands for every operation the setting can apply to. A name the spec does
not serve, or an operation the setting cannot apply to, is a configuration error naming both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import attrs

from amperity_async.custom.errors import ConfigurationError

from .config import ALL_OPERATIONS
from .spec import Operation

V = TypeVar("V")


@attrs.frozen
class Kind:
    """The operations a setting can apply to, and how an error names them."""

    accepts: Callable[[Operation], bool]
    description: str


ANY_OPERATION = Kind(lambda op: True, "an operation")


class OperationNames:
    """The operations a setting may name, found by either spelling."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        self._ops = {op.operation_id: op for op in operations}

    def select(
        self, setting: str, names: Iterable[str], kind: Kind = ANY_OPERATION, endpoints: Iterable[str] = ()
    ) -> frozenset[str]:
        """The operation ids ``names`` stand for, each one of ``kind`` or one of ``endpoints`` (served
        beside the spec's operations)."""
        return frozenset(self.select_values(setting, dict.fromkeys(names, True), kind, endpoints))

    def select_values(
        self, setting: str, values: Mapping[str, V], kind: Kind = ANY_OPERATION, endpoints: Iterable[str] = ()
    ) -> dict[str, V]:
        """Per operation id, the value a name-to-value setting gives it; ``*`` gives the rest of ``kind``
        theirs (``endpoints`` are chosen by name only)."""
        spellings = {_spelling(name): name for name in [*self._ops, *endpoints]}
        chosen: dict[str, V] = {}
        for name, value in values.items():
            if name == ALL_OPERATIONS:
                continue
            op_id = spellings.get(_spelling(name))
            if op_id is None:
                known = [op_id for op_id, op in self._ops.items() if kind.accepts(op)]
                raise ConfigurationError(
                    f"{setting}: {name!r} is no operation it can name "
                    f"({', '.join([*sorted(known), *endpoints])})"
                )
            op = self._ops.get(op_id)
            if op is not None and not kind.accepts(op):
                raise ConfigurationError(f"{setting}: {op_id} is not {kind.description}")
            chosen[op_id] = value
        if ALL_OPERATIONS in values:
            for op_id, op in self._ops.items():
                if kind.accepts(op):
                    chosen.setdefault(op_id, values[ALL_OPERATIONS])
        return chosen


def _spelling(name: str) -> str:
    return name.strip().lower().replace("_", "-")
