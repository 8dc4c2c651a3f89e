"""Run openapi-python-client on the normalized spec: strict, formatted and deterministic.

The package is generated into a staging folder and only replaces ``amperity_async/`` when the
generator printed no warning, so a failed run leaves the previous build in place. Beside the
generator's output, ``_operations.py`` indexes every operation's metadata from the normalized spec
(API, stability, pagination, time windows) for the hand-written layer, and ``openapi.json`` is the
normalized spec itself.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pprint
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from openapi_python_client.config import ConfigFile
from openapi_python_client.parser.openapi import generate_operation_id
from openapi_python_client.schema.untrusted_string import UntrustedString
from openapi_python_client.strings import PythonIdentifier

from .normalize import HTTP_METHODS
from .resources import (
    Overrides,
    ResourceNamesError,
    client_attributes,
    defines_list_method,
    render_resources_module,
)
from .sources import copy_tree_atomically

PACKAGE = "amperity_async"
INPUTS_STAMP = ".generated-from"
# Names of the resource view where the derived ones read badly (tools/specs/resources.py).
RESOURCE_NAMES = Path("openapi") / "resource-names.yaml"
# Lines the generator prints when it dropped or could not fully render something.
_WARNING = re.compile(r"warning|error|skipp|unable|pieces may be missing|could not", re.IGNORECASE)


class GenerateError(Exception):
    """The generator failed or warned; the previous package is left untouched."""


class ModuleNames:
    """The generator's own names for tag packages and endpoint modules, so the index cannot disagree.

    openapi-python-client names ``api/<tag>/<operation>.py`` with its ``PythonIdentifier`` (and an
    operation without an ``operationId`` after its method and path); reusing its functions keeps
    names such as ``HTTPResponse`` or ``class`` identical to the files it writes.
    """

    def __init__(self, config: Path) -> None:
        self.field_prefix = ConfigFile.load_from_path(config).field_prefix

    def tag(self, tag: str) -> str:
        return str(PythonIdentifier(tag, prefix="tag"))

    def endpoint(self, path: str, method: str, operation_id: str | None) -> str:
        if operation_id is None:
            name = generate_operation_id(path=UntrustedString(path), method=method, prefix=self.field_prefix)
        else:
            name = PythonIdentifier(operation_id, prefix=self.field_prefix)
        # The generator names the file by applying PythonIdentifier once more to the endpoint name.
        return str(PythonIdentifier(name, prefix=self.field_prefix))


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        target: Any = document
        for part in ref.lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _item_key(item: dict[str, Any]) -> str | None:
    """The property that identifies a list item (``id``, else the first string ``*_id`` it requires)."""
    props = item.get("properties") or {}
    if "id" in props:
        return "id"
    for name in [*(item.get("required") or ()), *props]:
        if name.endswith("_id") and (props.get(name) or {}).get("type", "string") == "string":
            return str(name)
    return None


_IDEMPOTENT_METHODS = ("get", "head", "options", "put", "delete")


def _form_spread(document: dict[str, Any], param: dict[str, Any]) -> bool:
    """Whether an object query parameter sends each of its entries as a parameter of its own."""
    schema = _resolve(document, param.get("schema") or {})
    return param.get("in") == "query" and schema.get("x-amperity-query-style") == "form"


def _statuses(operation: dict[str, Any], marker: str) -> list[int]:
    value = operation.get(marker) or []
    if not isinstance(value, list) or not all(isinstance(s, int) and 100 <= s <= 599 for s in value):
        raise GenerateError(
            f"{operation.get('operationId')}: {marker} must be a list of HTTP statuses, got {value!r}"
        )
    return sorted(value)


def _positive_int(operation: dict[str, Any], marker: str) -> int | None:
    value = operation.get(marker)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise GenerateError(
            f"{operation.get('operationId')}: {marker} must be a positive integer, got {value!r}"
        )
    return value


def operation_index(document: dict[str, Any], names: ModuleNames) -> dict[str, dict[str, Any]]:
    """Per operationId: what the client layer needs to know about it, from the normalized spec."""
    index: dict[str, dict[str, Any]] = {}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            module = names.endpoint(path, method, operation.get("operationId"))
            # An operation without an operationId is indexed under the name the generator gave it.
            op_id = operation.get("operationId") or module
            tag = (operation.get("tags") or ["default"])[0]
            params = [_resolve(document, p) for p in operation.get("parameters", [])]
            query = [p["name"] for p in params if p.get("in") == "query"]
            page_schema: dict[str, Any] = {}
            ok = operation.get("responses", {}).get("200") or operation.get("responses", {}).get("201")
            if ok:
                content = _resolve(document, ok).get("content", {}).get("application/json", {})
                if "schema" in content:
                    page_schema = content["schema"]
            item_schema = None
            page = _resolve(document, page_schema) if page_schema else {}
            data = page.get("properties", {}).get("data", {})
            # A list answers a page: a `data` array and a cursor; it is paginated only when its cursor
            # can be followed (lists whose documented cursor is unusable are marked
            # x-amperity-pagination: none). A `data` array without a cursor (a time series) is no list.
            has_cursor = "next_token" in page.get("properties", {})
            returns_list = method == "get" and data.get("type") == "array" and has_cursor
            cursor_usable = operation.get("x-amperity-pagination", "cursor") != "none"
            paginated = returns_list and cursor_usable and "next_token" in query
            if returns_list:
                item_schema = data.get("items", {}).get("$ref", "").rsplit("/", 1)[-1] or None
            item_key = _item_key(_resolve(document, data.get("items", {}))) if returns_list else None
            windows = [
                [name, name[: -len("_from")] + "_to"]
                for name in query
                if name.endswith("_from") and name[: -len("_from")] + "_to" in query
            ]
            responses = operation.get("responses", {})
            index[op_id] = {
                "success_statuses": sorted(int(code) for code in responses if str(code).startswith("2")),
                # A POST that changes nothing (a lookup with its keys in the body) may be resent like a GET.
                "idempotent": method in _IDEMPOTENT_METHODS or operation.get("x-amperity-idempotent") is True,
                # Statuses that prove the request did nothing, so that even a non-idempotent one is resent.
                "retryable_statuses": _statuses(operation, "x-amperity-retryable-statuses"),
                "max_body_bytes": _positive_int(operation, "x-amperity-max-body-bytes"),
                # The status meaning "nothing matched" (a lookup's 404), as opposed to an error.
                "no_match_status": _positive_int(operation, "x-amperity-no-match-status"),
                "form_query": [p["name"] for p in params if _form_spread(document, p)],
                "module": f"{PACKAGE}.api.{names.tag(tag)}.{module}",
                "method": method.upper(),
                "path": path,
                "api": operation["x-amperity-api"],
                "stability": operation.get("x-amperity-stability", "stable"),
                "paginated": paginated,
                "returns_list": returns_list,
                "item_schema": item_schema,
                "item_key": item_key,
                "max_window_days": operation.get("x-amperity-max-window-days"),
                "response_schema": page_schema.get("$ref", "").rsplit("/", 1)[-1] or None,
                "query": query,
                "required_query": [p["name"] for p in params if p.get("in") == "query" and p.get("required")],
                "path_params": [p["name"] for p in params if p.get("in") == "path"],
                "time_windows": windows,
            }
    return dict(sorted(index.items()))


def render_operations_module(document: dict[str, Any], names: ModuleNames) -> str:
    apis = document["info"].get("x-amperity-apis", {})
    versions = {
        api: {key: value for key, value in entry.items() if key in ("versions", "default_version")}
        for api, entry in apis.items()
    }
    # Where each API lives and whether its requests carry an api-version header.
    bases = {
        api: {"base_path": entry.get("base_path", ""), "version_header": entry.get("version_header", True)}
        for api, entry in apis.items()
    }
    ops = operation_index(document, names)

    def pretty(value: Any) -> str:
        return pprint.pformat(value, sort_dicts=True, width=100)

    return (
        '"""Operation metadata from the normalized spec, for the hand-written layer."""\n\n'
        "from typing import Any\n\n"
        f"API_VERSIONS: dict[str, dict[str, Any]] = {pretty(versions)}\n\n"
        f"APIS: dict[str, dict[str, Any]] = {pretty(bases)}\n\n"
        f"OPERATIONS: dict[str, dict[str, Any]] = {pretty(ops)}\n"
    )


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _tool_environment() -> dict[str, str]:
    """The environment the generator runs in: ruff (its post hooks call it by name) first on PATH.

    Inside a build front end's isolated environment the tools are importable but their scripts
    may not be on PATH, so ruff's binary is found the way ``python -m ruff`` finds it.
    """
    try:
        from ruff import find_ruff_bin
    except ImportError as exc:
        raise GenerateError(f"ruff is not installed in {sys.prefix}: {exc}") from exc
    ruff_dir = str(Path(find_ruff_bin()).parent)
    # No ruff cache: it would land inside the package, named after the (unique) staging path.
    return {**os.environ, "PATH": ruff_dir + os.pathsep + os.environ.get("PATH", ""), "RUFF_NO_CACHE": "true"}


def generation_inputs(project: Path, spec: Path) -> str:
    """A digest of everything the generated package is made from.

    The normalized spec, the generator's configuration and templates, this module (it writes
    part of the package), the generator's and ruff's versions and ruff's layout settings: when
    none of them changed, a build may keep the package it has.
    """
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + data + b"\0")

    add("spec", spec.read_bytes())
    add("config", (project / "generator-config.yaml").read_bytes())
    templates = project / "openapi" / "templates"
    for template in sorted(templates.rglob("*")):
        if template.is_file():
            add(template.relative_to(templates).as_posix(), template.read_bytes())
    add("generate.py", Path(__file__).read_bytes())
    add("resources.py", (Path(__file__).parent / "resources.py").read_bytes())
    names = project / RESOURCE_NAMES
    add("resource names", names.read_bytes() if names.is_file() else b"")
    # No area may take a name the client uses itself (a new one there may hide an area).
    client = project / "custom" / "client.py"
    add(
        "client attributes", " ".join(sorted(client_attributes(client))).encode() if client.is_file() else b""
    )
    for tool in ("openapi-python-client", "ruff"):
        try:
            add(tool, importlib.metadata.version(tool).encode())
        except importlib.metadata.PackageNotFoundError:
            add(tool, b"missing")
    add("ruff settings", generation_ruff_settings(project).encode())
    return digest.hexdigest()


# The project's ruff settings that shape generated code: layout only. Its lint selection and
# excludes (which name amperity_async/) are for hand-written code and never reach the generator.
_GENERATION_RUFF_KEYS = ("line-length", "indent-width", "target-version")


def generation_ruff_settings(project: Path) -> str:
    """A pyproject.toml for the generator's ruff runs, with the project's layout settings only."""
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return ""
    ruff = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("ruff", {})
    lines = ["[tool.ruff]"]
    lines += [f"{key} = {json.dumps(ruff[key])}" for key in _GENERATION_RUFF_KEYS if key in ruff]
    if isinstance(ruff.get("format"), dict):
        lines.append("[tool.ruff.format]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in sorted(ruff["format"].items())]
    return "\n".join(lines) + "\n"


def generated_from(package: Path) -> str | None:
    """The inputs digest a generated package was made from (None when unknown)."""
    try:
        return (package / INPUTS_STAMP).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _run_tool(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m TOOL ...`` in ``cwd``; -P keeps ``cwd`` off sys.path (the generated types.py
    would shadow the standard library's)."""
    return subprocess.run(
        [sys.executable, "-P", "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def generate(project: Path, *, out: Path | None = None, spec: Path | None = None) -> str:
    """Generate ``amperity_async/`` (or ``out``) from ``openapi/amperity.json`` (or ``spec``).

    Returns the tree hash of the generated package. Each run stages in its own folder, so runs
    into different ``out`` folders (tests, ``make update-spec``) do not disturb one another.
    """
    project = project.resolve()
    spec = (spec or project / "openapi" / "amperity.json").resolve()
    if not spec.exists():
        raise GenerateError(f"{spec} is missing: run 'make spec' first")
    env = _tool_environment()
    staging_root = Path(tempfile.mkdtemp(prefix=".generate-staging-", dir=project))
    staging = staging_root / PACKAGE
    # ruff (the generator's post hooks) reads its settings from the nearest pyproject.toml.
    (staging_root / "pyproject.toml").write_text(generation_ruff_settings(project), encoding="utf-8")
    config = project / "generator-config.yaml"
    try:
        result = _run_tool(
            [
                "openapi_python_client",
                "generate",
                "--path",
                str(spec),
                "--meta",
                "none",
                "--config",
                str(config),
                "--custom-template-path",
                str(project / "openapi" / "templates"),
                "--output-path",
                str(staging),
                "--overwrite",
            ],
            cwd=staging_root,
            env=env,
        )
        output = (result.stdout + result.stderr).strip()
        problems = [line for line in output.splitlines() if _WARNING.search(line)]
        if result.returncode != 0 or problems or not (staging / "__init__.py").exists():
            raise GenerateError(
                "openapi-python-client did not generate cleanly; the previous package is untouched:\n"
                + (output or f"exit status {result.returncode}")
            )
        document = json.loads(spec.read_text(encoding="utf-8"))
        (staging / "_operations.py").write_text(
            render_operations_module(document, ModuleNames(config)), encoding="utf-8"
        )
        try:
            resources = render_resources_module(
                document,
                operation_index(document, ModuleNames(config)),
                Overrides.load(project / RESOURCE_NAMES),
                defines_list_method(staging),
                client_attributes(project / "custom" / "client.py"),
            )
        except ResourceNamesError as exc:
            raise GenerateError(f"the resource view cannot be generated: {exc}") from exc
        (staging / "resources.py").write_text(resources, encoding="utf-8")
        (staging / "py.typed").write_text("", encoding="utf-8")
        (staging / "__main__.py").write_text(
            '"""python -m amperity_async: the amperity-async command."""\n\n'
            "import sys\n\nfrom .custom.cli import main\n\nsys.exit(main())\n",
            encoding="utf-8",
        )
        # The normalized spec travels with the package: the fake tenant serves it and the client
        # validates responses against its schemas.
        shutil.copyfile(spec, staging / "openapi.json")
        fmt = _run_tool(["ruff", "format", "--quiet", "_operations.py", "resources.py"], cwd=staging, env=env)
        if fmt.returncode != 0:
            raise GenerateError(f"ruff could not format the index or the view:\n{fmt.stdout}{fmt.stderr}")
        digest = tree_hash(staging)
        # Not part of the package (no wheel carries it): lets a build skip an unchanged generation.
        (staging / INPUTS_STAMP).write_text(generation_inputs(project, spec) + "\n", encoding="utf-8")
        # The hand-written layer appears inside the package for tools that only follow the source
        # tree (type checkers, the editable install); wheels map amperity_async.custom to custom/
        # and amperity_async.testing to custom/testing/ in setup.py.
        (staging / "custom").symlink_to(Path("..") / "custom", target_is_directory=True)
        (staging / "testing").symlink_to(Path("..") / "custom" / "testing", target_is_directory=True)
        destination = out or project / PACKAGE
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy_tree_atomically(staging, destination)
        return digest
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
