"""Run openapi-python-client on the normalized spec: strict, formatted and deterministic.

The package is generated into a staging folder and only replaces ``amperity_async/`` when the
generator printed no warning, so a failed run leaves the previous build in place. Beside the
generator's output, ``_operations.py`` indexes every operation's metadata from the normalized spec
(API, stability, pagination, time windows) for the hand-written layer, and ``openapi.json`` is the
normalized spec itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import pprint
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .normalize import HTTP_METHODS
from .sources import copy_tree_atomically

PACKAGE = "amperity_async"
# Lines the generator prints when it dropped or could not fully render something.
_WARNING = re.compile(r"warning|error|skipp|unable|pieces may be missing|could not", re.IGNORECASE)


class GenerateError(Exception):
    """The generator failed or warned; the previous package is left untouched."""


def snake(name: str) -> str:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-zA-Z0-9]+", "_", name).strip("_").lower()


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


def operation_index(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per operationId: what the client layer needs to know about it, from the normalized spec."""
    index: dict[str, dict[str, Any]] = {}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            op_id = operation["operationId"]
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
            # A list answers with a `data` array; it is paginated only when its cursor can be followed
            # (an overlay marks lists whose documented cursor is unusable with x-amperity-pagination).
            returns_list = method == "get" and data.get("type") == "array"
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
            index[op_id] = {
                "module": f"{PACKAGE}.api.{snake(tag)}.{snake(op_id)}",
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


def render_operations_module(document: dict[str, Any]) -> str:
    apis = document["info"].get("x-amperity-apis", {})
    ops = operation_index(document)
    return (
        '"""Operation metadata from the normalized spec, for the hand-written layer."""\n\n'
        "from typing import Any\n\n"
        f"API_VERSIONS: dict[str, dict[str, Any]] = {pprint.pformat(apis, sort_dicts=True, width=100)}\n\n"
        f"OPERATIONS: dict[str, dict[str, Any]] = {pprint.pformat(ops, sort_dicts=True, width=100)}\n"
    )


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def generate(project: Path, *, out: Path | None = None, spec: Path | None = None) -> str:
    """Generate ``amperity_async/`` (or ``out``) from ``openapi/amperity.json`` (or ``spec``).

    Returns the tree hash of the generated package. Each run stages in its own folder, so runs
    into different ``out`` folders (tests, ``make update-spec``) do not disturb one another.
    """
    project = project.resolve()
    spec = (spec or project / "openapi" / "amperity.json").resolve()
    if not spec.exists():
        raise GenerateError(f"{spec} is missing: run 'make spec' first")
    staging_root = Path(tempfile.mkdtemp(prefix=".generate-staging-", dir=project))
    staging = staging_root / PACKAGE
    # ruff (the generator's post hooks) reads its settings from the nearest pyproject.toml: the
    # project's, wherever the staging folder is.
    if (project / "pyproject.toml").is_file():
        shutil.copyfile(project / "pyproject.toml", staging_root / "pyproject.toml")
    bindir = str(Path(sys.executable).parent)
    # No ruff cache: it would land inside the package, named after the (unique) staging path.
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "RUFF_NO_CACHE": "true"}
    try:
        result = subprocess.run(
            [
                os.path.join(bindir, "openapi-python-client"),
                "generate",
                "--path",
                str(spec),
                "--meta",
                "none",
                "--config",
                str(project / "generator-config.yaml"),
                "--custom-template-path",
                str(project / "openapi" / "templates"),
                "--output-path",
                str(staging),
                "--overwrite",
            ],
            cwd=staging_root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        output = (result.stdout + result.stderr).strip()
        problems = [line for line in output.splitlines() if _WARNING.search(line)]
        if result.returncode != 0 or problems or not (staging / "__init__.py").exists():
            raise GenerateError(
                "openapi-python-client did not generate cleanly; the previous package is untouched:\n"
                + (output or f"exit status {result.returncode}")
            )
        document = json.loads(spec.read_text(encoding="utf-8"))
        (staging / "_operations.py").write_text(render_operations_module(document), encoding="utf-8")
        (staging / "py.typed").write_text("", encoding="utf-8")
        (staging / "__main__.py").write_text(
            '"""python -m amperity_async: the amperity-async command."""\n\n'
            "import sys\n\nfrom .custom.cli import main\n\nsys.exit(main())\n",
            encoding="utf-8",
        )
        # The normalized spec travels with the package: the fake tenant serves it and the client
        # validates responses against its schemas.
        shutil.copyfile(spec, staging / "openapi.json")
        fmt = subprocess.run(
            [os.path.join(bindir, "ruff"), "format", "--quiet", "_operations.py"],
            cwd=staging,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise GenerateError(f"ruff could not format _operations.py:\n{fmt.stdout}{fmt.stderr}")
        digest = tree_hash(staging)
        # The hand-written layer appears inside the package for tools that only follow the source
        # tree (type checkers); installs map amperity_async.custom to custom/ and
        # amperity_async.testing to custom/testing/ in setup.py.
        (staging / "custom").symlink_to(Path("..") / "custom", target_is_directory=True)
        (staging / "testing").symlink_to(Path("..") / "custom" / "testing", target_is_directory=True)
        destination = out or project / PACKAGE
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy_tree_atomically(staging, destination)
        return digest
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
