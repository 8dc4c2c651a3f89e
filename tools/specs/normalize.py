"""Build the one normalized document the generator reads from the repaired documents.

Each document is repaired by its overlays, then merged: the stable control-plane document, the
operations that exist only in the unstable superset (marked ``x-amperity-stability: unstable``),
the Profile API, and the hand-written Real-time API. Every operation carries ``x-amperity-api``
(set by the overlays, or by the hand-written document itself) so the client layer knows which base
URL, version header and rate limit apply.

The APIs live under different base paths of one host (``/api``, ``/prof``: the path of each
document's first server) and their paths may coincide (``/segments/...`` exists in two), so every
path of the merged document carries its API's base path: the generated functions' URLs are
relative to the host, and ``info.x-amperity-apis`` records each API's base path and whether its
requests carry an ``api-version`` header (whether its documents declare one).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def base_path(document: dict[str, Any], doc: PinnedDocument) -> str:
    """The path its first server gives a document's operations (``/api``), without a trailing slash."""
    servers = document.get("servers")
    url = (
        servers[0].get("url")
        if isinstance(servers, list) and servers and isinstance(servers[0], dict)
        else None
    )
    if not isinstance(url, str):
        raise NormalizeError(f"{doc.file}: no servers[0].url to take the {doc.api} API's base path from")
    return urlsplit(url.replace("{", "").replace("}", "")).path.rstrip("/")


def declares_version_header(document: dict[str, Any]) -> bool:
    """Whether any operation of a document declares the ``api-version`` request header."""
    shared = (document.get("components") or {}).get("parameters") or {}
    for item in (document.get("paths") or {}).values():
        if not isinstance(item, dict):
            continue
        declared = list(item.get("parameters") or [])
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                declared += item[method].get("parameters") or []
        for param in declared:
            ref = param.get("$ref", "") if isinstance(param, dict) else ""
            if ref.startswith("#/components/parameters/"):
                param = shared.get(ref.rsplit("/", 1)[-1], {})
            if (
                isinstance(param, dict)
                and param.get("in") == "header"
                and str(param.get("name")).lower() == "api-version"
            ):
                return True
    return False


def normalize(lock: Lock, upstream_dir: Path) -> tuple[dict[str, Any], list[ActionReport]]:
    repaired: list[tuple[PinnedDocument, dict[str, Any]]] = []
    reports: list[ActionReport] = []
    apis: dict[str, dict[str, Any]] = {}
    for doc in lock.all_documents:
        path = lock.document_path(doc, upstream_dir)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            hint = "a hand-written document" if doc.local is not None else "run 'make spec'"
            raise NormalizeError(f"cannot read {path}: {exc} ({hint})") from exc
        # Read before the repairs, which take the version header out of the generated signatures.
        entry = apis.setdefault(doc.api, {"versions": []})
        entry["versions"].append(doc.version)
        if doc.role == "stable":
            entry["default_version"] = doc.version
        for key, value in (
            ("base_path", base_path(document, doc)),
            ("version_header", declares_version_header(document)),
        ):
            if entry.setdefault(key, value) != value:
                raise NormalizeError(
                    f"{doc.file}: the {doc.api} API's documents disagree on its {key} "
                    f"({entry[key]!r} and {value!r})"
                )
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
            "description": (
                "Normalized by amperity-async from Amperity's published OpenAPI documents and its own "
                "descriptions of the APIs Amperity publishes none for, written from the documentation pages."
            ),
            "x-amperity-apis": apis,
        },
        # Paths carry their API's base path, so they are relative to the host.
        "servers": [{"url": "https://app.amperity.com"}],
        "security": [{"BearerAuth": []}],
        "tags": [],
        "paths": {},
        "components": {},
    }
    origins: dict[tuple[str, str], str] = {}
    for doc, document in repaired:
        _merge_document(merged, doc, document, stable_ops, apis[doc.api]["base_path"], origins)
    return merged, reports


def _merge_document(
    merged: dict[str, Any],
    doc: PinnedDocument,
    document: dict[str, Any],
    stable_ops: set[tuple[str, tuple[str, str]]],
    prefix: str,
    origins: dict[tuple[str, str], str],
) -> None:
    """Merge one repaired document; ``origins`` records which API each component came from."""
    for (relative, method), operation in operations(document).items():
        path = prefix + relative
        if doc.role != "stable" and (doc.api, (relative, method)) in stable_ops:
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
        if isinstance(document["paths"][relative].get("parameters"), list):
            item.setdefault("parameters", copy.deepcopy(document["paths"][relative]["parameters"]))

    for section, entries in document.get("components", {}).items():
        target = merged["components"].setdefault(section, {})
        for name, value in entries.items():
            if name not in target:
                target[name] = copy.deepcopy(value)
                origins[(section, name)] = doc.api
                continue
            if without_prose(target[name]) == without_prose(value):
                continue
            # An unstable superset may revise its own API's components (the stable one is kept);
            # two APIs naming different things alike would silently share one, so that is an error.
            if doc.role == "stable" or origins.get((section, name)) != doc.api:
                raise NormalizeError(
                    f"{doc.file}: components/{section}/{name} differs from the one already merged "
                    f"(from the {origins.get((section, name))} API); rename it in {doc.file}"
                    + ("" if doc.local is not None else "'s overlay")
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
