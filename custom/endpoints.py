"""The descriptor each generated endpoint module exports as ``ENDPOINT``.

It tells the client layer everything it needs about one operation in typed form: how to build the
request from the generated function's arguments, how to read a 2xx body into the response model,
and for lists how to read one item. The layer therefore calls nothing private in generated code
and never looks a model up by name.

This module is imported by generated code (also by stand-alone builds that link ``custom/`` into
another package), so it imports nothing from the generated package at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Literal, ParamSpec, TypeVar

import attrs

P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - the item type, next to R for the response

ParameterLocation = Literal["path", "query", "header", "cookie"]


@attrs.frozen
class Parameter:
    """One parameter as the spec declares it and as the generated functions take it."""

    name: str
    """The name on the wire (``workflow-id``, ``type``)."""
    python_name: str
    """The argument's name in the generated functions (``workflow_id``, ``type_``)."""
    location: ParameterLocation
    type: Any
    """The Python type of a given value (``str``, ``datetime.datetime``, an enum or model class)."""
    required: bool


@attrs.frozen
class Endpoint(Generic[P, R]):
    """One operation: its request builder (typed by its arguments ``P``) and its response ``R``."""

    module: str
    """The generated module's dotted name, the key of the operation index."""
    method: str
    path: str
    """The URL template relative to the API base, placeholders named after the Python parameters."""
    parameters: tuple[Parameter, ...]
    body: Any
    """The request body's type (a model class), or None when the operation takes no body."""
    build_request: Callable[P, dict[str, Any]]
    """The arguments of the operation -> keyword arguments for ``httpx.AsyncClient.request``."""
    parse: Callable[[Any], R]
    """The decoded JSON of a 2xx answer (None when it has no body) -> the response model."""
    has_body: bool
    """Whether a 2xx answer carries a JSON body to decode and parse."""

    @property
    def name(self) -> str:
        """The operation's name as users write it, e.g. ``list_segment``."""
        return self.module.rsplit(".", 1)[-1]

    def argument_names(self) -> list[str]:
        """The arguments ``build_request`` takes, in order, for error messages."""
        names = [p.python_name for p in self.parameters if p.location == "path"]
        if self.body is not None:
            names.append("body")
        return names + [p.python_name for p in self.parameters if p.location != "path"]


@attrs.frozen
class ListEndpoint(Endpoint[P, R], Generic[P, R, I]):
    """An operation answering with a page of items (a ``data`` array)."""

    item: Callable[[Any], I]
    """One decoded item of ``data`` -> its model."""
