"""Validation of what a request sends, against the operation's parameters and request schema."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .spec import LIST, Operation, Schema

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RequestError(Exception):
    """The request is invalid; ``status`` and the message are what the client gets."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_datetime_ms(name: str, text: str) -> int:
    """Epoch milliseconds of an ISO-8601 date-time (or a YYYY-MM-DD date, which the docs allow)."""
    try:
        if _DATE_ONLY.match(text):
            value = datetime.fromisoformat(text).replace(tzinfo=UTC)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
    except ValueError:
        raise RequestError(
            f"{name} must be an ISO-8601 date-time in UTC such as 2026-04-01T00:00:00Z, got {text!r}"
        ) from None
    return int(value.timestamp() * 1000)


def read_query(
    op: Operation, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(plain parameters, object parameters) of a request; unknown, repeated or missing ones refused.

    An object parameter is sent as ``name[member]=value`` pairs (deepObject) or, where its schema says
    form style, as parameters of their own: every parameter the operation does not declare is then an
    entry of it (a lookup's ``email=...``).
    """
    plain: dict[str, str] = {}
    deep: dict[str, dict[str, str]] = {}
    spread = op.form_object
    for key, value in pairs:
        bracket = key.find("[")
        if bracket > 0 and key.endswith("]"):
            base, member = key[:bracket], key[bracket + 1 : -1]
            param = op.query.get(base)
            if param is None or not param.deep_object or not member:
                raise RequestError(_unknown(op, key))
            members = deep.setdefault(base, {})
            if member in members:
                raise RequestError(f"query parameter {key!r} is given more than once")
            members[member] = value
            continue
        param = op.query.get(key)
        if param is None and key == "next_token" and op.role == LIST and not op.cursor_usable:
            continue  # the answer carries one; like upstream, a list without a usable cursor ignores it
        if spread is not None and (param is None or param.form_object):
            entries = deep.setdefault(spread, {})
            if key in entries:
                raise RequestError(f"query parameter {key!r} is given more than once")
            entries[key] = value
            continue
        if param is None or param.deep_object:
            raise RequestError(_unknown(op, key))
        if key in plain:
            raise RequestError(f"query parameter {key!r} is given more than once")
        plain[key] = value
    for name, param in op.query.items():
        if param.required and name not in plain and name not in deep:
            if param.form_object:
                raise RequestError(
                    f"{op.method} {op.path} needs at least one entry of {name!r}, each sent as a query "
                    f"parameter of its own (such as email=...)"
                )
            raise RequestError(f"query parameter {name!r} is required by {op.method} {op.path}")
    for name, value in plain.items():
        check_scalar(name, op.query[name].schema, value)
    return plain, deep


def _unknown(op: Operation, key: str) -> str:
    accepted = ", ".join(
        f"{n}[...]" if p.deep_object else n for n, p in op.query.items() if not p.form_object
    )
    accepted = accepted or "none"
    return f"unknown query parameter {key!r} for {op.method} {op.path} (accepted: {accepted})"


def check_scalar(name: str, schema: Schema, value: str) -> None:
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            raise RequestError(f"query parameter {name!r} must be an integer, got {value!r}")
    elif kind == "boolean":
        if value not in ("true", "false"):
            raise RequestError(f"query parameter {name!r} must be true or false, got {value!r}")
    elif schema.get("format") in ("date-time", "date"):
        parse_datetime_ms(name, value)
    enum = schema.get("enum")
    if enum and value not in [str(v) for v in enum]:
        raise RequestError(
            f"query parameter {name!r} must be one of {', '.join(map(str, enum))}; got {value!r}"
        )


def body_problem(schema: Schema, value: Any, where: str = "body", *, closed: bool = False) -> str | None:
    """Why a JSON value does not fit a schema (the subset of JSON Schema the spec uses), or None.

    ``closed``: objects with properties accept no others, as if each said ``additionalProperties: false``.
    """
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        kind = "object"
    checks: Mapping[str, Any] = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
    }
    if isinstance(kind, str) and kind in checks:
        expected = checks[kind]
        if not isinstance(value, expected) or (kind in ("integer", "number") and isinstance(value, bool)):
            return f"{where} must be of type {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))}, got {value!r}"
    if kind == "string" and schema.get("format") == "date-time":
        try:
            parse_datetime_ms(where, value)
        except RequestError as exc:
            return exc.message
    if kind == "object":
        props = schema.get("properties") or {}
        forbids_others = schema.get("additionalProperties") is False or (closed and bool(props))
        unknown = [name for name in value if name not in props]
        if forbids_others and unknown:
            names = ", ".join(f"{where}.{name}" for name in unknown)
            return (
                f"{names} {'is not a known property' if len(unknown) == 1 else 'are not known properties'} "
                f"(known: {', '.join(props) or 'none'})"
            )
        for name in schema.get("required") or ():
            if name not in value:
                return f"{where}.{name} is required"
        for name, member in value.items():
            if name in props:
                problem = body_problem(props[name], member, f"{where}.{name}", closed=closed)
                if problem:
                    return problem
    if kind == "array":
        for i, member in enumerate(value):
            problem = body_problem(schema.get("items") or {}, member, f"{where}[{i}]", closed=closed)
            if problem:
                return problem
    return None
