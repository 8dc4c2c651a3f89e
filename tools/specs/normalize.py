"""Build the one normalized document the generator reads from the repaired upstream documents.

Each upstream document is repaired by its overlays, then merged: the stable control-plane
document, the operations that exist only in the unstable superset (marked
``x-amperity-stability: unstable``), and the Profile API. Every operation carries
``x-amperity-api`` (set by the overlays) so the client layer knows which version header and rate
limit apply.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .overlay import ActionReport, Overlay
from .sources import Lock, PinnedDocument

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DOC_KEYS = frozenset({"description", "summary", "example", "examples"})


class NormalizeError(Exception):
    """The repaired documents cannot be merged into one."""


def repair(document: dict[str, Any], doc: PinnedDocument, lock: Lock) -> list[ActionReport]:
    reports: list[ActionReport] = []
    for overlay_name in doc.overlays:
        reports.extend(Overlay.load(lock.directory / overlay_name).apply(document))
    return reports


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            if isinstance(item, dict) and isinstance(item.get(method), dict):
                found[(path, method)] = item[method]
    return found


def without_prose(node: Any) -> Any:
    """A node without its prose, for telling real conflicts from differently worded docs."""
    if isinstance(node, dict):
        return {k: without_prose(v) for k, v in node.items() if k not in _DOC_KEYS}
    if isinstance(node, list):
        return [without_prose(v) for v in node]
    return node


def normalize(lock: Lock, upstream_dir: Path) -> tuple[dict[str, Any], list[ActionReport]]:
    repaired: list[tuple[PinnedDocument, dict[str, Any]]] = []
    reports: list[ActionReport] = []
    for doc in lock.documents:
        path = upstream_dir / doc.file
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NormalizeError(f"cannot read {path}: {exc} (run 'make spec')") from exc
        reports.extend(repair(document, doc, lock))
        repaired.append((doc, document))

    stable_ops = {
        (doc.api, key) for doc, document in repaired if doc.role == "stable" for key in operations(document)
    }
    merged: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Amperity APIs",
            "version": "; ".join(f"{d.api} {d.version}" for d, _ in repaired if d.role == "stable"),
            "description": "Normalized from Amperity's published OpenAPI documents by amperity-async.",
            "x-amperity-apis": {},
        },
        "servers": [{"url": "https://app.amperity.com/api"}],
        "security": [{"BearerAuth": []}],
        "tags": [],
        "paths": {},
        "components": {},
    }
    apis = merged["info"]["x-amperity-apis"]
    for doc, document in repaired:
        entry = apis.setdefault(doc.api, {"versions": []})
        entry["versions"].append(doc.version)
        if doc.role == "stable":
            entry["default_version"] = doc.version
        _merge_document(merged, doc, document, stable_ops)
    return merged, reports


def _merge_document(
    merged: dict[str, Any],
    doc: PinnedDocument,
    document: dict[str, Any],
    stable_ops: set[tuple[str, tuple[str, str]]],
) -> None:
    for (path, method), operation in operations(document).items():
        if doc.role != "stable" and (doc.api, (path, method)) in stable_ops:
            continue  # the stable document defines operations present in both
        if operation.get("x-amperity-api") != doc.api:
            raise NormalizeError(
                f"{doc.file}: {method.upper()} {path} is not marked x-amperity-api: {doc.api} "
                f"(the API's overlay must mark every operation)"
            )
        item = merged["paths"].setdefault(path, {})
        if method in item:
            raise NormalizeError(f"{doc.file}: {method.upper()} {path} is defined by two documents")
        operation = copy.deepcopy(operation)
        operation["x-amperity-stability"] = "stable" if doc.role == "stable" else doc.version
        item[method] = operation
        if isinstance(document["paths"][path].get("parameters"), list):
            item.setdefault("parameters", copy.deepcopy(document["paths"][path]["parameters"]))

    for section, entries in document.get("components", {}).items():
        target = merged["components"].setdefault(section, {})
        for name, value in entries.items():
            if name not in target:
                target[name] = copy.deepcopy(value)
            elif without_prose(target[name]) != without_prose(value) and doc.role == "stable":
                raise NormalizeError(
                    f"{doc.file}: components/{section}/{name} differs from the one already merged; "
                    f"rename it in {doc.file}'s overlay"
                )
    known_tags = {t["name"] for t in merged["tags"]}
    for tag in document.get("tags", []):
        if tag.get("name") not in known_tags:
            merged["tags"].append(copy.deepcopy(tag))
            known_tags.add(tag.get("name"))


def unmatched_repairs(reports: list[ActionReport]) -> list[ActionReport]:
    """Overlay actions that matched nothing in any document (the defect may be fixed upstream).

    An overlay shared by several documents may match nothing in one of them; only an action that
    matched nowhere deserves a review.
    """
    matched: dict[tuple[str, int], int] = {}
    first: dict[tuple[str, int], ActionReport] = {}
    for report in reports:
        key = (report.overlay, report.index)
        matched[key] = matched.get(key, 0) + report.matched
        first.setdefault(key, report)
    return [first[key] for key, count in matched.items() if count == 0]


def write_json(path: Path, document: dict[str, Any]) -> bool:
    """Write ``document`` atomically; an unchanged file is left alone (its mtime drives make).

    Returns whether the file changed.
    """
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True
