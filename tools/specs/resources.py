"""The resource view (``client.<area>.<method>(...)``): names derived from the spec, rendered as a module.

Every operation gets a place, so a new spec version brings its methods along. The names follow
from the operation's tag and its operationId (``verb-noun``):

1. **Area.** The tag in snake_case with its last word in the plural: ``Workflow`` -> ``workflows``,
   ``Audit Events`` -> ``audit_events``.
2. **Sub-area.** When an operation's noun (its operationId without the verb) starts with the tag's
   noun and goes on, it is a thing of its own and gets its own area, its noun in the plural:
   ``list-campaign-draft`` under ``Campaigns`` -> ``campaign_drafts``; ``list-ingest-jobs`` under
   ``Ingest`` -> ``ingest_jobs``.
3. **Method.** The verb, followed by the noun's words that the area's name does not already say:
   ``list-events`` in ``audit_events`` -> ``list``; ``send-event`` in ``realtime`` -> ``send_event``.
4. **Clashes.** Operations that would share a method name in one area each take their module's
   name instead (``list_segment``); a name that is a Python keyword gets a trailing ``_``.
5. **Overrides.** ``openapi/resource-names.yaml`` renames what reads badly: ``areas`` maps a tag to
   its attribute, ``operations`` maps an operationId to its method name or to ``{area, method}``.
   Entries for tags or operations the spec does not have are ignored, so one file serves several
   spec versions; malformed entries stop the generation with a message naming them.

A list operation whose cursor can be followed (the index's ``paginated``) is bound as the endpoint
module's ``ListMethod`` (awaitable, with ``.pages()`` and ``.items()``), every other one as its
``Method``.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


class ResourceNamesError(Exception):
    """The naming overrides are malformed, or the derived names cannot be made into a module."""


def words(text: str) -> list[str]:
    """``Audit Events`` -> [audit, events]; ``list-ingest-jobs`` -> [list, ingest, jobs]; camelCase too."""
    return [word.lower() for word in _WORD.findall(text)]


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def plural(word: str) -> str:
    if singular(word) != word:
        return word
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _name(parts: Iterable[str]) -> str:
    name = "_".join(parts)
    return name + "_" if keyword.iskeyword(name) else name


def area_name(noun: list[str]) -> str:
    """Words of a noun -> the attribute of its area, the last word in the plural."""
    return _name([*noun[:-1], plural(noun[-1])]) if noun else "default"


@attrs.frozen
class Overrides:
    areas: Mapping[str, str] = attrs.field(factory=dict)
    """Tag -> area attribute."""
    operations: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    """operationId -> {"area": ..., "method": ...} (either or both)."""

    @classmethod
    def load(cls, path: Path) -> Overrides:
        if not path.is_file():
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ResourceNamesError(f"{path.name} is not valid YAML: {exc}") from exc
        return cls.from_data(data, path.name)

    @classmethod
    def from_data(cls, data: Any, source: str = "resource names") -> Overrides:
        if not isinstance(data, dict) or set(data) - {"areas", "operations"}:
            raise ResourceNamesError(
                f"{source}: expected a mapping with 'areas' and 'operations', got {data!r}"
            )
        areas = data.get("areas") or {}
        operations = data.get("operations") or {}
        if not isinstance(areas, dict) or not isinstance(operations, dict):
            raise ResourceNamesError(f"{source}: 'areas' and 'operations' must be mappings")
        for tag, area in areas.items():
            _check_identifier(area, f"{source}: areas.{tag}")
        normalized: dict[str, dict[str, str]] = {}
        for op_id, entry in operations.items():
            if isinstance(entry, str):
                entry = {"method": entry}
            if not isinstance(entry, dict) or not entry or set(entry) - {"area", "method"}:
                raise ResourceNamesError(
                    f"{source}: operations.{op_id} must be a method name or a mapping of area and/or method, "
                    f"got {entry!r}"
                )
            for key, value in entry.items():
                _check_identifier(value, f"{source}: operations.{op_id}.{key}")
            normalized[str(op_id)] = {str(k): str(v) for k, v in entry.items()}
        return cls(areas={str(k): str(v) for k, v in areas.items()}, operations=normalized)


def _check_identifier(value: object, where: str) -> None:
    if not isinstance(value, str) or not _IDENTIFIER.match(value) or keyword.iskeyword(value):
        raise ResourceNamesError(
            f"{where} must be a lower-case Python identifier that is not a keyword, got {value!r}"
        )


@attrs.frozen
class Placement:
    """Where one operation appears in the resource view."""

    operation_id: str
    module: str
    area: str
    method: str


def _tag_of(operation: Mapping[str, Any]) -> str:
    tags = operation.get("tags") or ["default"]
    return str(tags[0])


def place_operations(
    document: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]], overrides: Overrides
) -> list[Placement]:
    """Every operation of the index with its area and method, by the rules of this module's docstring."""
    tags: dict[str, str] = {}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                tags[operation["operationId"]] = _tag_of(operation)
    derived: list[tuple[str, str, str, str]] = []
    for op_id, info in sorted(index.items()):
        tag = tags.get(op_id, "default")
        tag_noun = [singular(word) for word in words(tag)]
        verb, *noun = words(op_id) or ["call"]
        noun_singular = [singular(word) for word in noun]
        if len(noun_singular) > len(tag_noun) and noun_singular[: len(tag_noun)] == tag_noun:
            area, area_noun = area_name(noun), noun_singular
        else:
            area, area_noun = overrides.areas.get(tag) or area_name(words(tag)), tag_noun
        unsaid = [word for word, one in zip(noun, noun_singular, strict=True) if one not in area_noun]
        method = _name([verb, *unsaid])
        override = overrides.operations.get(op_id, {})
        derived.append(
            (op_id, str(info["module"]), override.get("area", area), override.get("method", method))
        )
    # Clashing names within an area fall back to each operation's own module name.
    seen: dict[tuple[str, str], int] = {}
    for _, _, area, method in derived:
        seen[area, method] = seen.get((area, method), 0) + 1
    placements = []
    for op_id, module, area, method in derived:
        if seen[area, method] > 1:
            method = module.rsplit(".", 1)[-1]
        placements.append(Placement(op_id, module, area, method))
    if len({(p.area, p.method) for p in placements}) != len(placements):
        raise ResourceNamesError(
            f"operations still share a method name after falling back to their module names: {placements}"
        )
    return placements


def _class_name(area: str) -> str:
    return "".join(part.capitalize() for part in area.split("_") if part) + "Resource"


def _docstring(text: str) -> str:
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{text}"""'


def _first_sentence(text: str) -> str:
    text = " ".join(text.replace("*", "").split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def defines_list_method(package: Path) -> Callable[[str], bool]:
    """Whether a generated endpoint module (dotted name) binds its list as ``ListMethod``."""

    def check(module: str) -> bool:
        source = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(source.read_text(encoding="utf-8"))
        return any(isinstance(node, ast.ClassDef) and node.name == "ListMethod" for node in tree.body)

    return check


def client_attributes(source: Path) -> set[str]:
    """The public names ``AmperityClient`` (``custom/client.py``) defines itself: an area with one of
    these names would be hidden behind it. A tree without the client takes none."""
    if not source.is_file():
        return set()
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == "AmperityClient"):
            continue
        for member in ast.walk(node):
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and member in node.body:
                names.add(member.name)
            elif isinstance(member, ast.Attribute) and isinstance(member.ctx, ast.Store):
                if isinstance(member.value, ast.Name) and member.value.id == "self":
                    names.add(member.attr)
            elif isinstance(member, ast.AnnAssign | ast.Assign) and member in node.body:
                targets = [member.target] if isinstance(member, ast.AnnAssign) else member.targets
                names.update(target.id for target in targets if isinstance(target, ast.Name))
    return {name for name in names if not name.startswith("_")}


def _method_class(info: Mapping[str, Any], module: str, has_list_method: Callable[[str], bool]) -> str:
    """``ListMethod`` for a list whose cursor can be followed, ``Method`` for everything else."""
    return "ListMethod" if info["paginated"] and has_list_method(module) else "Method"


def render_resources_module(
    document: Mapping[str, Any],
    index: Mapping[str, Mapping[str, Any]],
    overrides: Overrides,
    has_list_method: Callable[[str], bool],
    taken: Iterable[str] = (),
) -> str:
    """The module; ``taken`` are names the client uses itself, which no area may have."""
    placements = place_operations(document, index, overrides)
    hidden = sorted({p.area for p in placements} & set(taken))
    if hidden:
        raise ResourceNamesError(
            f"the area(s) {', '.join(hidden)} would be hidden behind AmperityClient's own attributes: "
            f"name them under 'areas' (by tag) or 'operations' in openapi/resource-names.yaml"
        )
    operations = {
        op["operationId"]: op
        for item in document.get("paths", {}).values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    tag_text = {tag["name"]: tag.get("description", "") for tag in document.get("tags", []) if "name" in tag}
    by_area: dict[str, list[Placement]] = {}
    for placement in placements:
        by_area.setdefault(placement.area, []).append(placement)

    # Import each endpoint module by its own name, or with its tag package's name where two clash.
    short = [p.module.rsplit(".", 1)[-1] for p in placements]
    alias = {
        p.module: (name if short.count(name) == 1 else p.module.split(".")[-2] + "_" + name)
        for p, name in zip(placements, short, strict=True)
    }
    lines = [
        '"""The resource view of ``AmperityClient``: one attribute per API area, one method per operation.',
        "",
        "Generated from the normalized spec's tags and operation ids (names overridden in",
        "openapi/resource-names.yaml). Each method sends through the client's ``call``, ``pages`` and",
        '``paginate``, with the operation\'s typed signature."""',
        "",
        "from __future__ import annotations",
        "",
        "from functools import cached_property",
        "from typing import TYPE_CHECKING, cast",
        "",
    ]
    for module in sorted(alias):
        package, name = module.split(".", 1)[1].rsplit(".", 1)
        renamed = f" as {alias[module]}" if alias[module] != name else ""
        lines.append(f"from .{package} import {name}{renamed}")
    lines += [
        "from .custom.resources import Resource",
        "",
        "if TYPE_CHECKING:",
        "    from .custom.client import AmperityClient",
        "",
    ]
    view = [
        "",
        "class ResourceView:",
        '    """The API areas of a client, e.g. ``client.workflows.run(config_id=...)``."""',
    ]
    for area in sorted(by_area):
        members = sorted(by_area[area], key=lambda p: p.method)
        class_name = _class_name(area)
        tags = sorted({_tag_of(operations.get(p.operation_id, {})) for p in members})
        about = "; ".join(f"{tag}: {tag_text[tag]}" if tag_text.get(tag) else tag for tag in tags)
        lines += [
            "",
            f"class {class_name}(Resource):",
            f"    {_docstring(f'``client.{area}``. {about}')}",
            "",
        ]
        kinds = {p.method: _method_class(index[p.operation_id], p.module, has_list_method) for p in members}
        for p in members:
            kind = kinds[p.method]
            operation = operations.get(p.operation_id, {})
            summary = _first_sentence(str(operation.get("description") or operation.get("summary") or ""))
            info = index[p.operation_id]
            about_method = f"{info['method']} {info['path']}" + (f": {summary}" if summary else "")
            lines += [f"    {p.method}: {alias[p.module]}.{kind}", f"    {_docstring(about_method)}"]
        lines += [
            "",
            "    def __init__(self, client: AmperityClient) -> None:",
            "        super().__init__(client)",
        ]
        lines += [f"        self.{p.method} = {alias[p.module]}.{kinds[p.method]}(client)" for p in members]
        lines.append("")
        view += [
            "",
            "    @cached_property",
            f"    def {area}(self) -> {class_name}:",
            f"        {_docstring(about)}",
            f'        return {class_name}(cast("AmperityClient", self))',
        ]
    return "\n".join(lines + view) + "\n"
