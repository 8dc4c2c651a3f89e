"""Bases and helpers of the resource view (``client.workflows.run(...)``).

The view itself is generated: ``amperity_async.resources`` has one class per API area and the
endpoint modules one method class per operation, with the operation's typed signature. What they
share lives here: the binding to a client, enum arguments given as their values, and request
bodies given as their fields. Every method sends through the client's own ``call``/``pages``/
``paginate``, so tokens, limits, retries and response checks are the same as everywhere.

Generated code of stand-alone builds imports this module too: it imports nothing from the
generated package at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .endpoints import Endpoint
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .client import AmperityClient

E = TypeVar("E", bound=Enum)
B = TypeVar("B")


class OperationMethod:
    """One operation bound to a client: awaiting it sends one request through the client."""

    endpoint: ClassVar[Endpoint[..., Any]]

    def __init__(self, client: AmperityClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        endpoint = type(self).endpoint
        return f"<{endpoint.name}: {endpoint.method} {endpoint.path}>"


class Resource:
    """One area of the API on one client (``client.workflows``): an attribute per operation."""

    def __init__(self, client: AmperityClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        methods = sorted(name for name, value in vars(self).items() if isinstance(value, OperationMethod))
        return f"<{type(self).__name__}: {', '.join(methods)}>"

    def __dir__(self) -> list[str]:
        # Editors and help() list the operations first; the private client reference is no API.
        return sorted(name for name in vars(self) if not name.startswith("_"))


def enum_value(enum: type[E], value: object, argument: str) -> E:
    """The member of ``enum`` that is ``value`` or has it as its value.

    Raises ConfigurationError naming the argument and the accepted values otherwise, before any
    request is sent.
    """
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except (ValueError, TypeError):
        accepted = ", ".join(repr(member.value) for member in enum)
        raise ConfigurationError(f"{argument}={value!r} is not one of {accepted}") from None


def request_body(
    operation: str,
    model: Callable[..., B],
    body: B | None,
    fields: Mapping[str, Any],
    *,
    required: Sequence[str],
) -> B:
    """The request body: ``body`` itself, or the model built from the fields given as keywords.

    ``fields`` holds only the fields the caller gave. Both forms at once, or fields without a
    required one, raise ConfigurationError naming them.
    """
    if body is not None:
        if fields:
            raise ConfigurationError(
                f"{operation}: pass the request body as body=... or as its fields, not both "
                f"(got body= and {', '.join(sorted(fields))})"
            )
        return body
    missing = [name for name in required if name not in fields]
    if missing:
        raise ConfigurationError(
            f"{operation}: the request body needs {', '.join(missing)} (or pass the whole body as body=...)"
        )
    return model(**fields)
