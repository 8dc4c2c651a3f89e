"""``--param KEY=VALUE`` strings into the generated function's argument types.

The types are those the operation's generated descriptor (``ENDPOINT.parameters``) declares, never
guessed from their names: enums by value, timestamps (UTC when no offset is given), booleans,
integers, and deepObject filter models given as ``filter=first_name:Daniel,city:Oslo`` or
``filter[first_name]=Daniel`` (repeatable).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..endpoints import Endpoint, Parameter
from ..errors import ConfigurationError
from ..extract import parse_timestamp
from ..operations import OperationInfo

_DEEP = re.compile(r"^(?P<name>[A-Za-z_][\w-]*)\[(?P<member>[^\]]+)\]$")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@attrs.frozen
class Arguments:
    """The path arguments (in path order) and the keyword parameters of one call."""

    positional: tuple[str, ...]
    params: dict[str, Any]


def _keyword_parameters(op: OperationInfo) -> dict[str, Parameter]:
    """The operation's non-path parameters by their generated argument names (``type_``, ``limit``)."""
    endpoint: Endpoint[..., Any] = op.load_module().ENDPOINT
    return {p.python_name: p for p in endpoint.parameters if p.location != "path"}


def accepted_names(op: OperationInfo) -> list[str]:
    return [name.rstrip("_") for name in _keyword_parameters(op)]


def decode_arguments(op: OperationInfo, pairs: Sequence[tuple[str, str]]) -> Arguments:
    """Path parameters by name (``--param id=idx-1``), everything else decoded by its type."""
    keyword = _keyword_parameters(op)
    by_flag = {
        name.rstrip("_"): name for name in keyword
    }  # the generator appends _ to names like filter, type
    path_values: dict[str, str] = {}
    grouped: dict[str, list[tuple[str | None, str]]] = {}
    for key, value in pairs:
        deep = _DEEP.match(key)
        base, member = (deep["name"], deep["member"]) if deep else (key, None)
        if member is None and key in op.path_params:
            path_values[key] = value
            continue
        name = by_flag.get(base.replace("-", "_"))
        if name is None:
            accepted = ", ".join([*op.path_params, *sorted(by_flag)]) or "nothing"
            raise ConfigurationError(f"{op.name} has no parameter {key!r}; it takes: {accepted}")
        grouped.setdefault(name, []).append((member, value))
    missing = [name for name in op.path_params if name not in path_values]
    if missing:
        raise ConfigurationError(f"{op.name} needs " + " ".join(f"--param {name}=..." for name in missing))
    params = {
        name: _decode(op, name.rstrip("_"), keyword[name].type, values) for name, values in grouped.items()
    }
    return Arguments(tuple(path_values[name] for name in op.path_params), params)


def _decode(op: OperationInfo, flag: str, annotation: Any, values: list[tuple[str | None, str]]) -> Any:
    kinds = _concrete(annotation)
    model = next((k for k in kinds if _is_mapping_model(k)), None)
    if model is not None:
        return _mapping_model(op, flag, model, values)
    if any(member is not None for member, _ in values):
        raise ConfigurationError(f"{op.name}: {flag}[...] is not a filter; pass --param {flag}=VALUE")
    if len(values) > 1:
        raise ConfigurationError(f"{op.name}: --param {flag} was given {len(values)} times")
    text = values[0][1]
    problems: list[str] = []
    for kind in kinds:
        try:
            return _scalar(kind, text, flag)
        except ConfigurationError:
            raise  # a type the command line cannot express
        except ValueError as exc:
            problems.append(str(exc))
    expected = " or ".join(_describe(k) for k in kinds)
    detail = f" ({problems[0]})" if len(problems) == 1 and problems[0] else ""
    raise ConfigurationError(f"{op.name}: {flag}={text!r} is not {expected}{detail}")


def _concrete(annotation: Any) -> list[Any]:
    """The member types of ``X | Unset | None`` that a command-line value can be."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    return [m for m in members if m is not type(None) and getattr(m, "__name__", "") != "Unset"]


def _is_mapping_model(kind: Any) -> bool:
    """A generated model holding free-form members (``additional_properties``), e.g. ProfileFilter."""
    return (
        isinstance(kind, type)
        and attrs.has(kind)
        and "additional_properties" in attrs.fields_dict(kind)
        and callable(getattr(kind, "from_dict", None))
    )


def _mapping_model(op: OperationInfo, flag: str, model: Any, values: list[tuple[str | None, str]]) -> Any:
    members: dict[str, str] = {}
    for member, text in values:
        if member is not None:
            members[member] = text
            continue
        for pair in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = pair.partition(":")
            if not sep or not key.strip():
                raise ConfigurationError(
                    f"{op.name}: {flag}={text!r}: each member is ATTRIBUTE:VALUE "
                    f"(e.g. {flag}=first_name:Daniel), "
                    f"or pass --param {flag}[ATTRIBUTE]=VALUE"
                )
            members[key.strip()] = value
    if not members:
        raise ConfigurationError(f"{op.name}: {flag} needs at least one ATTRIBUTE:VALUE")
    return model.from_dict(members)


_SCALARS: Mapping[Any, Callable[[str, str], Any]] = {
    str: lambda text, flag: text,
    int: lambda text, flag: int(text),
    float: lambda text, flag: float(text),
    dt.datetime: parse_timestamp,
    dt.date: lambda text, flag: dt.date.fromisoformat(text),
}


def _scalar(kind: Any, text: str, flag: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError("")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        for member in kind:
            if str(member.value) == text or str(member.value).lower() == text.lower():
                return member
        raise ValueError("one of " + ", ".join(str(m.value) for m in kind))
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (str,)
        return [_scalar(item, part.strip(), flag) for part in text.split(",") if part.strip()]
    convert = _SCALARS.get(kind)
    if convert is None:
        raise ConfigurationError(
            f"--param {flag} takes a {_describe(kind)}, which cannot be given on the command line"
        )
    try:
        return convert(text, flag)
    except ValueError:  # ConfigurationError included; the caller names the expected type
        raise ValueError("") from None


def _describe(kind: Any) -> str:
    if kind is dt.datetime:
        return "an ISO-8601 timestamp (e.g. 2026-04-01T00:00:00Z)"
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "a " + kind.__name__
    return "a " + getattr(kind, "__name__", str(kind))
