"""Shared helpers for the spec pipeline tests: the project's pins, overlays and normalized spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import yaml

from tools.specs.normalize import HTTP_METHODS, normalize, repair
from tools.specs.sources import Lock

PROJECT = Path(__file__).resolve().parents[1]
OPENAPI = PROJECT / "openapi"
UPSTREAM = OPENAPI / "upstream"


def project_lock() -> Lock:
    return Lock.load(OPENAPI / "sources.lock.json")


def normalized_spec() -> dict[str, Any]:
    return dict(json.loads((OPENAPI / "amperity.json").read_text(encoding="utf-8")))


def upstream_document(file: str) -> dict[str, Any]:
    return dict(json.loads((UPSTREAM / file).read_text(encoding="utf-8")))


def lock_with_overlays(tmp_path: Path, *, drop: tuple[str, str] | None = None) -> Lock:
    """The project's lock, reading its overlays from a copy in ``tmp_path``.

    ``drop=(overlay file name, target)`` removes the action with that target (whitespace aside), to
    show what that repair is for.
    """
    shutil.copytree(OPENAPI / "overlays", tmp_path / "overlays")
    lock = attrs.evolve(project_lock(), path=tmp_path / "sources.lock.json")
    for written in lock.written:
        assert written.local is not None
        shutil.copyfile(OPENAPI / written.local, tmp_path / written.local)
    if drop is None:
        return lock
    name, target = drop
    path = tmp_path / "overlays" / name
    overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
    matching = [a for a in overlay["actions"] if " ".join(a["target"].split()) == target]
    assert len(matching) == 1, f"{target!r} names {len(matching)} actions of {name}, expected 1"
    overlay["actions"].remove(matching[0])
    if overlay["actions"]:
        path.write_text(yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
        return lock
    # An overlay needs at least one action: without its only one, no document uses it.
    documents = tuple(
        attrs.evolve(d, overlays=tuple(o for o in d.overlays if Path(o).name != name)) for d in lock.documents
    )
    return attrs.evolve(lock, documents=documents)


def repaired_documents(tmp_path: Path, *, drop: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each upstream document with its overlays applied (one action dropped, when asked)."""
    lock = lock_with_overlays(tmp_path, drop=drop)
    documents = {}
    for doc in lock.documents:
        document = upstream_document(doc.file)
        repair(document, doc, lock)
        documents[doc.file] = document
    return documents


def normalize_with_overlays(tmp_path: Path, *, drop: tuple[str, str] | None = None) -> dict[str, Any]:
    document, _ = normalize(lock_with_overlays(tmp_path, drop=drop), UPSTREAM)
    return document


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                found[item[method]["operationId"]] = (method, path, item[method])
    return found


def resolve(document: dict[str, Any], node: Any) -> Any:
    """``node`` with its ``$ref`` followed; raises KeyError for a reference that leads nowhere."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def copy_project(dest: Path) -> Path:
    """A project tree with the real pipeline code, overlays, downloads and built package."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir()
    shutil.copyfile(PROJECT / "Makefile", dest / "Makefile")
    for name in ("generator-config.yaml", "pyproject.toml"):
        shutil.copyfile(PROJECT / name, dest / name)
    for name in ("custom", "tools"):
        shutil.copytree(PROJECT / name, dest / name, ignore=ignore)
    (dest / "openapi").mkdir()
    for name in ("overlays", "templates", "upstream"):
        shutil.copytree(OPENAPI / name, dest / "openapi" / name, ignore=ignore)
    for name in ("sources.lock.json", "amperity.json", "realtime.json", "resource-names.yaml"):
        shutil.copyfile(OPENAPI / name, dest / "openapi" / name)
    shutil.copytree(PROJECT / "amperity_async", dest / "amperity_async", symlinks=True, ignore=ignore)
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
    }
