"""Check 2xx bodies against the spec before any generated code touches them.

Generated ``from_dict`` methods trust the server: a missing field surfaces as a bare KeyError and a
wrong type often not at all. Here each operation's response schema (from the packaged normalized
spec) is compiled once into msgspec types. A body is decoded once, to plain JSON data (what pages
hand out and models are built from), and that data is checked against the types in C
(``msgspec.convert``), naming the exact field on failure. Unknown fields pass (Amperity adds fields
as a non-breaking change), and so do new enum values. Where the documents are silent the check is
liberal: an optional field may be null (Amperity's servers send null for values they do not have,
such as a running workflow's ``ended_at`` or a last page's ``next_token``). Where they are explicit
it is strict: a required field that is missing, null or of the wrong type is an error naming the
field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, Union

import msgspec

from .errors import ResponseValidationError
from .operations import OperationInfo

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
_PATH_IN_ERROR = re.compile(r"`\$(?P<path>[^`]*)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def load_packaged_spec() -> dict[str, Any]:
    text = resources.files("amperity_async").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


class SchemaCompiler:
    """OpenAPI 3.0 schema objects -> msgspec types (Structs for objects with properties)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._schemas: Mapping[str, Any] = document.get("components", {}).get("schemas", {})
        self._by_ref: dict[str, Any] = {}

    def compile(self, schema: Mapping[str, Any], name: str = "Inline") -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._compile_ref(ref)
        compiled = self._compile(schema, name)
        return Union[compiled, None] if schema.get("nullable") else compiled  # noqa: UP007

    def _compile_ref(self, ref: str) -> Any:
        if ref not in self._by_ref:
            name = ref.rsplit("/", 1)[-1]
            target = self._schemas.get(name)
            if target is None:
                raise KeyError(f"unresolvable $ref {ref}")
            self._by_ref[ref] = Any  # a self-reference while compiling degrades to Any
            self._by_ref[ref] = self.compile(target, name)
        return self._by_ref[ref]

    def _compile(self, schema: Mapping[str, Any], name: str) -> Any:
        for combiner in ("allOf", "oneOf", "anyOf"):
            parts = schema.get(combiner)
            if isinstance(parts, list) and parts:
                if len(parts) == 1:
                    return self.compile(parts[0], name)
                return Any  # unions of objects cannot be told apart without a discriminator
        kind = schema.get("type")
        if kind == "array":
            return list[self.compile(schema.get("items", {}), name + "Item")]  # type: ignore[misc]
        if kind == "object" or "properties" in schema:
            properties: Mapping[str, Any] = schema.get("properties", {})
            if not properties:
                extra = schema.get("additionalProperties")
                value = self.compile(extra, name + "Value") if isinstance(extra, dict) else Any
                return dict[str, value]  # type: ignore[valid-type]
            required = set(schema.get("required", []))
            fields: list[Any] = []
            for prop, sub in properties.items():
                typ = self.compile(sub, name + prop.title().replace("_", ""))
                if prop in required:
                    fields.append((prop, typ))
                else:
                    fields.append((prop, Union[typ, None, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
            fields.sort(key=lambda f: len(f) == 3)  # msgspec wants required fields first
            # Only ever built to check data and dropped at once, never in a cycle: not tracked by
            # the garbage collector, which would otherwise run more often on every page.
            return msgspec.defstruct(name, fields, forbid_unknown_fields=False, gc=False)
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        return Any


_NOT_COMPILED = object()


class ResponseValidator:
    """Decodes a 2xx body to plain JSON data, checked against the operation's schema."""

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        self._document = document if document is not None else load_packaged_spec()
        self._compiler = SchemaCompiler(self._document)
        self._shapes: dict[str, Any] = {}
        self._plain = msgspec.json.Decoder()

    def shape(self, op: OperationInfo) -> Any:
        """The msgspec type a 2xx body of ``op`` must convert to (None: the spec declares none)."""
        shape = self._shapes.get(op.operation_id, _NOT_COMPILED)
        if shape is _NOT_COMPILED:
            schema = self._success_schema(op)
            shape = self._shapes[op.operation_id] = None if schema is None else self._compiler.compile(schema)
        return shape

    def _success_schema(self, op: OperationInfo) -> Mapping[str, Any] | None:
        operation = self._document["paths"][op.path][op.method.lower()]
        for status, response in sorted(operation.get("responses", {}).items()):
            if status.startswith("2"):
                while "$ref" in response:
                    response = self._document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    return dict(schema)
        return None

    def decode(self, op: OperationInfo, content: bytes, *, request_id: str | None = None) -> Any:
        shape = self.shape(op)
        try:
            data = self._plain.decode(content)
            if shape is not None:
                msgspec.convert(data, shape)  # only checks: the plain data is what callers get
            return data
        except msgspec.ValidationError as exc:
            message = str(exc)
            match = _PATH_IN_ERROR.search(message)
            field = match.group("path").lstrip(".") if match else ""
            missing = _MISSING_FIELD.search(message)
            if missing:
                field = f"{field}.{missing.group(1)}" if field else missing.group(1)
            detail = _PATH_IN_ERROR.sub("", message).strip().removesuffix("- at").strip()
            raise ResponseValidationError(
                operation=op.operation_id, field=field or "(body)", detail=detail, request_id=request_id
            ) from exc
        except (msgspec.DecodeError, RecursionError) as exc:
            snippet = content[:120].decode("utf-8", "replace")
            what = "not JSON" if isinstance(exc, msgspec.DecodeError) else "JSON nested too deeply"
            raise ResponseValidationError(
                operation=op.operation_id,
                field="(body)",
                detail=f"{what} ({exc}); body starts with {snippet!r}",
                request_id=request_id,
            ) from exc
