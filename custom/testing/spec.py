"""The served API, read from the normalized OpenAPI document and nothing else.

Each operation is given a role by its shape, never by its name: a *list* answers a page object
(``data`` array and ``next_token``); a *get* sits one path segment below a list and answers that
list's item; a *create* is a POST on a list's path answering its item; an *action* is a POST one
segment below a get (``.../{id}/stop``). An operation the spec marks with
``x-amperity-profile-store`` (the Real-time API's) does what the marker names in the tenant's profile
store (:mod:`.profile_store`). Anything else is answered with an instance of its response schema.
So a new spec version brings its routes along with no edits here.

Paths are served as the normalized spec writes them, each under its API's base path (``/api/...``,
``/prof/...``).
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from amperity_async.custom.errors import ConfigurationError

Schema = dict[str, Any]

LIST, GET, CREATE, ACTION, STORE, OTHER = "list", "get", "create", "action", "store", "other"
PAGINATION_PARAMS = ("limit", "next_token", "with_total")


@attrs.frozen
class QueryParam:
    name: str
    required: bool
    schema: Schema
    deep_object: bool
    description: str
    form_object: bool = False
    """An object whose entries travel as query parameters of their own (``email=...``)."""


@attrs.frozen
class Operation:
    operation_id: str
    method: str
    path: str
    api: str
    stability: str
    description: str
    query: Mapping[str, QueryParam]
    path_params: tuple[str, ...]
    success_status: int
    response_schema: Schema | None
    response_name: str | None
    request_schema: Schema | None
    path_regex: re.Pattern[str] = attrs.field(eq=False, repr=False)
    role: str = OTHER
    item_name: str | None = None
    collection: str | None = None
    """The path of the list operation whose items this operation reads or changes."""
    verb: str | None = None
    time_windows: tuple[tuple[str, str], ...] = ()
    cursor_usable: bool = True
    """False where the spec marks a list's cursor unusable (``x-amperity-pagination: none``): one
    answer holds every item of the window, and a next_token sent back is ignored."""
    max_window_days: int | None = None
    """The longest ``*_from``/``*_to`` window accepted (``x-amperity-max-window-days``)."""
    views: tuple[View, ...] = ()
    version_header: bool = True
    """Whether requests carry ``api-version`` (the spec's ``x-amperity-apis``: not for the Real-time API)."""
    store_action: str | None = None
    """What the operation does in the profile store (``x-amperity-profile-store``), if anything."""
    max_body_bytes: int | None = None
    """The largest request body accepted (``x-amperity-max-body-bytes``)."""

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(name for name in self.query if name not in PAGINATION_PARAMS)

    @property
    def form_object(self) -> str | None:
        """The query parameter whose entries are sent as parameters of their own, if any."""
        return next((name for name, param in self.query.items() if param.form_object), None)


@attrs.frozen
class View:
    """A query parameter that picks how much of the answer comes back, as its description documents it:
    "Set this value to overview to return only the following parameters: a, b, and c ... Default value:
    overview". Values without such a list return everything."""

    param: str
    default: str | None
    fields: Mapping[str, frozenset[str]]

    def fields_for(self, value: str | None) -> frozenset[str] | None:
        """The fields answered for the parameter's value (None: every field)."""
        chosen = value if value is not None else self.default
        return None if chosen is None else self.fields.get(chosen)


_ONLY_FIELDS = r"[Ss]et this value to\W*{value}\W* to return only the following \w+:\s*(?P<names>[^.]+)\."
_DEFAULT_VALUE = re.compile(r"[Dd]efault value:\W*(?P<value>[\w-]+)")


def _view(param: QueryParam) -> View | None:
    enum = [str(v) for v in param.schema.get("enum") or ()]
    fields: dict[str, frozenset[str]] = {}
    for value in enum:
        found = re.search(_ONLY_FIELDS.format(value=re.escape(value)), param.description)
        if found:
            names = re.split(r",\s*(?:and\s+)?|\s+and\s+", found.group("names"))
            fields[value] = frozenset(n.strip(" *`") for n in names if n.strip(" *`"))
    if not fields:
        return None
    default = _DEFAULT_VALUE.search(param.description)
    chosen = default.group("value") if default and default.group("value") in enum else None
    return View(param.name, chosen, fields)


def _max_window_days(raw: Mapping[str, Any]) -> int | None:
    value = raw.get("x-amperity-max-window-days")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(
            f"{raw.get('operationId')}: x-amperity-max-window-days must be a positive integer, got {value!r}"
        )
    return value


def _path_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("([^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}/?$")


class Resolver:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ConfigurationError(f"only local $refs are supported in the served spec, got {ref!r}")
        node: Any = self._document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve_shallow(self, node: Any) -> Any:
        """The node itself, or what its $ref chain points at (nested refs left in place)."""
        for _ in range(40):
            if not (isinstance(node, dict) and "$ref" in node):
                return node
            node = self.lookup(node["$ref"])
        raise ConfigurationError("the served spec chains $refs more than 40 deep (a cycle?)")

    def resolve(self, node: Any, depth: int = 0) -> Any:
        """The node with every $ref inlined and single-member allOf collapsed."""
        if depth > 40:
            raise ConfigurationError("the served spec nests $refs more than 40 deep (a cycle?)")
        if isinstance(node, list):
            return [self.resolve(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = copy.deepcopy(self.lookup(node["$ref"]))
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return self.resolve({**target, **extra}, depth + 1)
        resolved = {k: self.resolve(v, depth + 1) for k, v in node.items()}
        all_of = resolved.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            merged = {**all_of[0], **{k: v for k, v in resolved.items() if k != "allOf"}}
            return merged
        return resolved


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return str(node["$ref"]).rsplit("/", 1)[-1]
    return None


def _json_content(node: Mapping[str, Any]) -> Any:
    content = node.get("content") or {}
    media = content.get("application/json") or next(iter(content.values()), None)
    return None if media is None else media.get("schema")


def _time_windows(query: Mapping[str, QueryParam]) -> tuple[tuple[str, str], ...]:
    windows = []
    for name, param in query.items():
        if name.endswith("_from") and param.schema.get("format") in ("date-time", "date"):
            partner = name[: -len("_from")] + "_to"
            if partner in query:
                windows.append((name, partner))
    return tuple(windows)


class TenantSpec:
    """The operations, schemas and API versions of one normalized spec document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.resolver = Resolver(document)
        apis = (document.get("info") or {}).get("x-amperity-apis")
        if not isinstance(apis, dict) or not apis:
            raise ConfigurationError(
                "the served spec has no info.x-amperity-apis (is it the normalized document?)"
            )
        self.api_versions: dict[str, tuple[str, ...]] = {
            api: tuple(str(v) for v in meta.get("versions", ())) for api, meta in apis.items()
        }
        self.base_paths: dict[str, str] = {api: str(meta.get("base_path", "")) for api, meta in apis.items()}
        self._version_headers = {
            api: meta.get("version_header", True) is not False for api, meta in apis.items()
        }
        self.schemas: dict[str, Schema] = {
            name: self.resolver.resolve(schema)
            for name, schema in ((document.get("components") or {}).get("schemas") or {}).items()
        }
        self.operations = self._read_operations()
        self._assign_roles()
        # Literal segments before templated ones so /workflow/runs never matches /workflow/{x}.
        self.routes = sorted(self.operations, key=lambda op: (op.path.count("{"), -len(op.path)))
        self.paths = {op.path for op in self.operations}

    @classmethod
    def load(cls, path: Path | None = None) -> TenantSpec:
        try:
            if path is None:
                text = (importlib.resources.files("amperity_async") / "openapi.json").read_text("utf-8")
            else:
                text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the spec to serve ({path or 'packaged openapi.json'}): {exc}"
            ) from None
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"the spec to serve is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigurationError("the spec to serve is not an OpenAPI document (not a JSON object)")
        try:
            return cls(document)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            # A hand-edited document can break in many places; say which file, not where it broke.
            raise ConfigurationError(
                f"the spec to serve ({path or 'packaged openapi.json'}) "
                "is not a normalized OpenAPI document: "
                f"{type(exc).__name__} {exc}"
            ) from None

    def _read_operations(self) -> list[Operation]:
        operations = []
        for path, item in (self.document.get("paths") or {}).items():
            shared = item.get("parameters", [])
            for method, raw in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                operations.append(self._operation(path, method.upper(), raw, shared))
        return operations

    def _operation(self, path: str, method: str, raw: Mapping[str, Any], shared: list[Any]) -> Operation:
        op_id = str(raw.get("operationId") or f"{method} {path}")
        query: dict[str, QueryParam] = {}
        path_params: list[str] = []
        for param in [*shared, *raw.get("parameters", [])]:
            param = self.resolver.resolve(param)
            if param.get("in") == "query":
                schema = param.get("schema") or {}
                form_object = schema.get("x-amperity-query-style") == "form"
                query[param["name"]] = QueryParam(
                    name=param["name"],
                    required=bool(param.get("required")),
                    schema=schema,
                    deep_object=param.get("style") == "deepObject" and not form_object,
                    description=str(param.get("description") or ""),
                    form_object=form_object,
                )
        path_params = re.findall(r"\{([^}]+)\}", path)
        responses = raw.get("responses") or {}
        success = sorted(code for code in responses if str(code).startswith("2"))
        status = int(success[0]) if success else 200
        raw_schema = _json_content(self.resolver.resolve_shallow(responses[success[0]])) if success else None
        body = raw.get("requestBody")
        request_schema = None
        if body:
            request_schema = self.resolver.resolve(_json_content(self.resolver.resolve_shallow(body)))
        api = str(raw.get("x-amperity-api") or next(iter(self.api_versions)))
        store_action = raw.get("x-amperity-profile-store")
        max_body = raw.get("x-amperity-max-body-bytes")
        return Operation(
            operation_id=op_id,
            method=method,
            path=path,
            api=api,
            stability=str(raw.get("x-amperity-stability") or "stable"),
            description=str(raw.get("description") or ""),
            query=query,
            path_params=tuple(path_params),
            success_status=status,
            response_schema=None if raw_schema is None else self.resolver.resolve(raw_schema),
            response_name=_ref_name(raw_schema),
            request_schema=request_schema,
            path_regex=_path_regex(path),
            time_windows=_time_windows(query),
            cursor_usable=raw.get("x-amperity-pagination", "cursor") != "none",
            max_window_days=_max_window_days(raw),
            views=tuple(view for view in map(_view, query.values()) if view is not None),
            version_header=self._version_headers.get(api, True),
            store_action=None if store_action is None else str(store_action),
            max_body_bytes=max_body if isinstance(max_body, int) and not isinstance(max_body, bool) else None,
            role=OTHER if store_action is None else STORE,
        )

    def _assign_roles(self) -> None:
        lists: dict[str, Operation] = {}
        for index, op in enumerate(self.operations):
            item = _page_item_name(op, self.document)
            if op.method == "GET" and item is not None and op.role != STORE:
                op = attrs.evolve(op, role=LIST, item_name=item, collection=op.path)
                self.operations[index] = op
                lists[op.path] = op
        gets: dict[str, Operation] = {}
        for index, op in enumerate(self.operations):
            if op.role != OTHER:
                continue
            parent, _, last = op.path.rpartition("/")
            owner = lists.get(parent)
            if op.method == "GET" and owner and last.startswith("{") and op.response_name == owner.item_name:
                op = attrs.evolve(op, role=GET, item_name=owner.item_name, collection=owner.path)
                gets[op.path] = op
            elif op.method == "POST" and op.path in lists and op.response_name == lists[op.path].item_name:
                owner = lists[op.path]
                op = attrs.evolve(op, role=CREATE, item_name=owner.item_name, collection=owner.path)
            self.operations[index] = op
        for index, op in enumerate(self.operations):
            if op.role != OTHER or op.method != "POST":
                continue
            parent, _, verb = op.path.rpartition("/")
            grandparent = parent.rpartition("/")[0]
            owner = lists.get(grandparent)
            if (
                parent.endswith("}")
                and owner
                and not verb.startswith("{")
                and op.response_name == owner.item_name
            ):
                self.operations[index] = attrs.evolve(
                    op, role=ACTION, item_name=owner.item_name, collection=owner.path, verb=verb
                )

    def list_operations(self) -> list[Operation]:
        return [op for op in self.operations if op.role == LIST]

    def get(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)

    def match(self, method: str, path: str) -> tuple[Operation | None, tuple[str, ...], tuple[str, ...]]:
        """(operation, path parameter values, the methods the path answers to: empty for no such path)."""
        allowed: list[str] = []
        for op in self.routes:
            found = op.path_regex.match(path)
            if found:
                if op.method == method:
                    return op, found.groups(), (method,)
                if op.method not in allowed:
                    allowed.append(op.method)
        return None, (), tuple(allowed)


def _page_item_name(op: Operation, document: Mapping[str, Any]) -> str | None:
    schema = op.response_schema or {}
    props = schema.get("properties") or {}
    data = props.get("data")
    if not (isinstance(data, dict) and data.get("type") == "array" and "next_token" in props):
        return None
    # The item's schema name, read from the unresolved page schema.
    page = Resolver(document).lookup(f"#/components/schemas/{op.response_name}") if op.response_name else {}
    return (
        _ref_name(((page.get("properties") or {}).get("data") or {}).get("items"))
        or f"{op.operation_id}-item"
    )
