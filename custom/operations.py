"""What the client layer knows about each operation, read from the generated operation index.

Nothing here names an endpoint: the index is built from the normalized spec at generation time,
so a new spec version brings its operations along without edits to this module.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import attrs

from amperity_async._operations import API_VERSIONS, APIS, OPERATIONS

CONTROL_PLANE = "control-plane"
PROFILE = "profile"
REALTIME = "realtime"
_IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


@attrs.frozen
class ApiInfo:
    """Where an API's operations live and what its requests carry, from the spec's ``servers``."""

    name: str
    base_path: str
    """The path its generated operation paths start with (``/api``, ``/prof``)."""
    version_header: bool
    """Whether its requests carry ``api-version`` (the Real-time API's take none)."""


@attrs.frozen
class OperationInfo:
    operation_id: str
    module: str
    method: str
    path: str
    api: str
    stability: str
    paginated: bool
    """A list whose cursor can be followed (``client.pages``/``paginate`` work on it)."""
    returns_list: bool
    """Answers with a page (a ``data`` array), paginated or not: one request per filter window."""
    item_schema: str | None
    item_key: str | None
    """The item property that identifies an item (``id``, ``event_id``), when the schema has one."""
    max_window_days: int | None
    """The longest time window (``*_from`` to ``*_to``) the operation accepts, where documented."""
    response_schema: str | None
    query: tuple[str, ...]
    required_query: tuple[str, ...]
    path_params: tuple[str, ...]
    time_windows: tuple[tuple[str, str], ...]
    path_regex: re.Pattern[str] = attrs.field(eq=False, repr=False)
    idempotent: bool = False
    """Safe to send again: a GET, or a POST the spec marks as changing nothing (a lookup)."""
    retryable_statuses: frozenset[int] = frozenset()
    """Statuses the spec says prove the request did nothing, so even a non-idempotent one is resent."""
    max_body_bytes: int | None = None
    """The largest request body the operation accepts; a larger one is refused before sending."""
    no_match_status: int | None = None
    """The status meaning "nothing matched" (a lookup's 404): ``client.find`` answers None for it."""
    success_statuses: tuple[int, ...] = (200,)
    form_query: tuple[str, ...] = ()
    """Object query parameters whose entries are sent as parameters of their own (lookup keys)."""

    @property
    def name(self) -> str:
        """The generated module's name, e.g. ``list_segment``; what users and the CLI call it."""
        return self.module.rsplit(".", 1)[-1]

    @property
    def unstable_only(self) -> bool:
        return self.stability != "stable"

    def load_module(self) -> ModuleType:
        __import__(self.module)
        return sys.modules[self.module]


def _path_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{pattern}/?$")


def _build(op_id: str, raw: Mapping[str, Any]) -> OperationInfo:
    return OperationInfo(
        operation_id=op_id,
        module=raw["module"],
        method=raw["method"],
        path=raw["path"],
        api=raw["api"],
        stability=raw["stability"],
        paginated=raw["paginated"],
        returns_list=raw.get("returns_list", raw["paginated"]),
        item_schema=raw["item_schema"],
        item_key=raw.get("item_key"),
        max_window_days=raw.get("max_window_days"),
        response_schema=raw.get("response_schema"),
        query=tuple(raw["query"]),
        required_query=tuple(raw["required_query"]),
        path_params=tuple(raw["path_params"]),
        time_windows=tuple((a, b) for a, b in raw["time_windows"]),
        path_regex=_path_regex(raw["path"]),
        idempotent=raw.get("idempotent", raw["method"] in _IDEMPOTENT_METHODS),
        retryable_statuses=frozenset(raw.get("retryable_statuses", ())),
        max_body_bytes=raw.get("max_body_bytes"),
        no_match_status=raw.get("no_match_status"),
        success_statuses=tuple(raw.get("success_statuses", (200,))),
        form_query=tuple(raw.get("form_query", ())),
    )


class OperationRegistry:
    """Every operation of the normalized spec, findable by id, module, function or request."""

    def __init__(
        self,
        operations: Mapping[str, Mapping[str, Any]],
        api_versions: Mapping[str, Any],
        apis: Mapping[str, Mapping[str, Any]] = APIS,
    ) -> None:
        self._by_id = {op_id: _build(op_id, raw) for op_id, raw in operations.items()}
        self._by_module = {op.module: op for op in self._by_id.values()}
        self._by_name = {op.name: op for op in self._by_id.values()}
        self.api_versions = {api: dict(v) for api, v in api_versions.items()}
        self.apis = {
            name: ApiInfo(name, str(api.get("base_path", "")), bool(api.get("version_header", True)))
            for name, api in apis.items()
        }
        # Literal paths before templated ones, so /workflow/runs never matches /workflow/{x}.
        self._routes = sorted(self._by_id.values(), key=lambda op: (op.path.count("{"), -len(op.path)))

    def __iter__(self) -> Iterator[OperationInfo]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, key: str) -> OperationInfo | None:
        """By operationId (``list-segment``), module name (``list_segment``) or dotted module path."""
        return self._by_id.get(key) or self._by_name.get(key) or self._by_module.get(key)

    def for_operation(self, operation: ModuleType | Callable[..., Any]) -> OperationInfo:
        """The operation of a generated module or of one of its functions."""
        module = (
            operation.__name__ if isinstance(operation, ModuleType) else getattr(operation, "__module__", "")
        )
        info = self._by_module.get(module)
        if info is None:
            raise TypeError(
                f"{operation!r} is not a generated operation of amperity_async.api "
                f"(pass a module such as amperity_async.api.segments.list_segment or its asyncio_detailed)"
            )
        return info

    def match(self, method: str, path: str) -> OperationInfo | None:
        """The operation a request is for; ``path`` as the spec writes it, with its API's base path."""
        method = method.upper()
        for op in self._routes:
            if op.method == method and op.path_regex.match(path):
                return op
        return None

    def default_version(self, api: str) -> str:
        return str(self.api_versions[api]["default_version"])

    def versioned_apis(self) -> list[str]:
        """The APIs whose requests carry an ``api-version`` header."""
        return [api for api in self.api_versions if api not in self.apis or self.apis[api].version_header]

    def api_of_path(self, path: str) -> ApiInfo | None:
        """The API whose base path ``path`` is under (the longest base path that fits)."""
        fits = [
            api for api in self.apis.values() if path == api.base_path or path.startswith(api.base_path + "/")
        ]
        return max(fits, key=lambda api: len(api.base_path), default=None)

    def list_operations(self) -> list[OperationInfo]:
        """Every operation that answers with a page of items, paginated or not."""
        return [op for op in self._by_id.values() if op.returns_list]


REGISTRY = OperationRegistry(OPERATIONS, API_VERSIONS)
