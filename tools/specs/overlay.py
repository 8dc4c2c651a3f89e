"""Apply OpenAPI Overlay documents (1.0, plus the ``copy`` action of 1.1) to a JSON document.

Repairs to Amperity's specs are kept as overlay files: reviewable data with a description per
action, targeted with RFC 9535 JSONPath so that they keep applying when a new version arrives.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jsonpath
import yaml


class OverlayError(Exception):
    """An overlay document is malformed or an action cannot be applied."""


@attrs.frozen
class ActionReport:
    overlay: str
    index: int
    description: str
    target: str
    matched: int


@attrs.frozen
class Overlay:
    name: str
    actions: tuple[Mapping[str, Any], ...]

    @classmethod
    def load(cls, path: Path) -> Overlay:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise OverlayError(f"{path}: cannot read overlay: {exc}") from exc
        return cls.from_dict(data, name=path.name)

    @classmethod
    def from_dict(cls, data: Any, *, name: str = "<overlay>") -> Overlay:
        if not isinstance(data, dict) or not str(data.get("overlay", "")).startswith("1."):
            raise OverlayError(f"{name}: not an Overlay 1.x document (missing 'overlay: 1.x')")
        actions = data.get("actions")
        if not isinstance(actions, list) or not actions:
            raise OverlayError(f"{name}: 'actions' must be a non-empty list")
        for index, action in enumerate(actions):
            if not isinstance(action, dict) or not isinstance(action.get("target"), str):
                raise OverlayError(f"{name}: action {index} has no 'target' string")
            verbs = [verb for verb in ("update", "remove", "copy") if verb in action]
            if len(verbs) != 1:
                raise OverlayError(
                    f"{name}: action {index} ({action['target']}) needs exactly one of "
                    f"update, remove, copy; has {verbs or 'none'}"
                )
        return cls(name=name, actions=tuple(actions))

    def apply(self, document: dict[str, Any]) -> list[ActionReport]:
        """Apply every action in order, mutating ``document``; report the matches of each."""
        reports = []
        for index, action in enumerate(self.actions):
            target = action["target"]
            try:
                matches = list(jsonpath.finditer(target, document))
            except jsonpath.JSONPathError as exc:
                raise OverlayError(f"{self.name}: action {index}: bad JSONPath {target!r}: {exc}") from exc
            if action.get("remove") is True:
                _remove_all(document, [m.parts for m in matches])
            elif "copy" in action:
                source = _single(document, action["copy"], f"{self.name}: action {index}")
                for match in matches:
                    _merge_into(match.obj, source, f"{self.name}: action {index} ({target})")
            elif "update" in action:
                for match in matches:
                    _merge_into(match.obj, action["update"], f"{self.name}: action {index} ({target})")
            reports.append(
                ActionReport(
                    overlay=self.name,
                    index=index,
                    description=" ".join(str(action.get("description", "")).split()),
                    target=" ".join(target.split()),
                    matched=len(matches),
                )
            )
        return reports


def _single(document: dict[str, Any], path: str, where: str) -> Any:
    try:
        found = list(jsonpath.finditer(path, document))
    except jsonpath.JSONPathError as exc:
        raise OverlayError(f"{where}: bad JSONPath {path!r}: {exc}") from exc
    if len(found) != 1:
        raise OverlayError(f"{where}: copy source {path!r} matched {len(found)} nodes, expected 1")
    return found[0].obj


def _merge_into(target: Any, update: Any, where: str) -> None:
    if isinstance(target, list):
        target.append(copy.deepcopy(update))
    elif isinstance(target, dict) and isinstance(update, dict):
        for key, value in update.items():
            if isinstance(target.get(key), dict) and isinstance(value, dict):
                _merge_into(target[key], value, where)
            else:
                target[key] = copy.deepcopy(value)
    else:
        raise OverlayError(f"{where}: cannot update a {type(target).__name__} with a {type(update).__name__}")


def _remove_all(document: dict[str, Any], locations: list[tuple[Any, ...]]) -> None:
    # Deepest and highest array index first, so earlier removals do not shift later locations.
    for parts in sorted(
        locations, key=lambda p: (len(p), p[-1] if p and isinstance(p[-1], int) else -1), reverse=True
    ):
        if not parts:
            raise OverlayError("an overlay cannot remove the whole document")
        parent: Any = document
        for part in parts[:-1]:
            parent = parent[part]
        key = parts[-1]
        if isinstance(parent, list):
            del parent[int(key)]
        else:
            parent.pop(key, None)
