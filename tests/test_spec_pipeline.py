"""The spec pipeline: overlay application, pinned downloads, strict and deterministic generation,
and the coverage of the generated package."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from spec_support import (
    OPENAPI,
    PROJECT,
    UPSTREAM,
    copy_project,
    normalized_spec,
    operations,
    project_lock,
    snapshot,
    upstream_document,
)

from tools.specs.generate import GenerateError, generate, tree_hash
from tools.specs.normalize import unmatched_repairs
from tools.specs.overlay import ActionReport, Overlay, OverlayError
from tools.specs.sources import (
    ChecksumMismatch,
    Lock,
    SpecSourceError,
    fetch_all,
    http_reader,
    sha256,
    source_of,
)

# --------------------------------------------------------------------------------------------
# Overlay application


def _overlay(*actions: dict[str, Any]) -> Overlay:
    return Overlay.from_dict({"overlay": "1.0.0", "actions": list(actions)}, name="test.yaml")


def test_update_merges_into_objects_and_appends_to_lists() -> None:
    document: dict[str, Any] = {"a": {"b": {"c": 1, "d": 2}, "items": [1]}}
    reports = _overlay(
        {"target": "$.a", "update": {"b": {"d": 3, "e": 4}, "new": True}},
        {"target": "$.a.items", "update": 2},
    ).apply(document)
    assert document == {"a": {"b": {"c": 1, "d": 3, "e": 4}, "new": True, "items": [1, 2]}}
    assert [r.matched for r in reports] == [1, 1]


def test_update_copies_the_value_for_every_match() -> None:
    document: dict[str, Any] = {"x": {"p": {}}, "y": {"p": {}}}
    _overlay({"target": "$.*.p", "update": {"tags": ["t"]}}).apply(document)
    document["x"]["p"]["tags"].append("only-x")
    assert document["y"]["p"] == {"tags": ["t"]}


def test_remove_deletes_every_match_including_several_list_elements() -> None:
    document: dict[str, Any] = {
        "params": [{"n": 1, "h": True}, {"n": 2}, {"n": 3, "h": True}, {"n": 4, "h": True}]
    }
    document["keep"] = {"default": 5, "type": "integer"}
    reports = _overlay(
        {"target": "$.params[?@.h]", "remove": True},
        {"target": "$.keep.default", "remove": True},
    ).apply(document)
    assert document == {"params": [{"n": 2}], "keep": {"type": "integer"}}
    assert [r.matched for r in reports] == [3, 1]


def test_copy_merges_the_source_node_into_the_target() -> None:
    document: dict[str, Any] = {"paths": {"/old": {"get": {"operationId": "op"}}, "/new": {}}}
    _overlay({"target": "$.paths['/new']", "copy": "$.paths['/old']"}).apply(document)
    assert document["paths"]["/new"] == {"get": {"operationId": "op"}}
    document["paths"]["/new"]["get"]["operationId"] = "changed"
    assert document["paths"]["/old"]["get"]["operationId"] == "op"


def test_copy_source_must_be_one_node() -> None:
    with pytest.raises(OverlayError, match=r"test\.yaml: action 0.*matched 0 nodes"):
        _overlay({"target": "$.a", "copy": "$.missing"}).apply({"a": {}})


def test_bad_jsonpath_names_the_overlay_and_action() -> None:
    overlay = _overlay(
        {"target": "$.a", "update": {"x": 1}}, {"target": "$.paths[?@.name ==", "remove": True}
    )
    with pytest.raises(OverlayError, match=r"test\.yaml: action 1: bad JSONPath '\$\.paths\[\?@\.name =='"):
        overlay.apply({"a": {}})


def test_action_matching_nothing_is_reported_and_changes_nothing() -> None:
    document: dict[str, Any] = {"a": {"b": 1}}
    reports = _overlay(
        {"target": "$.a[?@.missing]", "description": "a repair  whose\n defect is gone", "remove": True}
    ).apply(document)
    assert document == {"a": {"b": 1}}
    assert reports == [
        ActionReport(
            overlay="test.yaml",
            index=0,
            description="a repair whose defect is gone",
            target="$.a[?@.missing]",
            matched=0,
        )
    ]


def test_unmatched_repairs_are_those_matching_in_no_document() -> None:
    def report(index: int, matched: int) -> ActionReport:
        return ActionReport(
            overlay="o.yaml", index=index, description="", target=f"$.t{index}", matched=matched
        )

    reports = [report(0, 0), report(1, 0), report(0, 2), report(1, 0)]
    assert unmatched_repairs(reports) == [report(1, 0)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"actions": [{"target": "$", "remove": True}]}, "not an Overlay 1.x document"),
        ({"overlay": "1.0.0", "actions": []}, "'actions' must be a non-empty list"),
        ({"overlay": "1.0.0", "actions": [{"remove": True}]}, "action 0 has no 'target' string"),
        (
            {"overlay": "1.0.0", "actions": [{"target": "$.a", "update": {}, "remove": True}]},
            r"action 0 \(\$\.a\) needs exactly one of update, remove, copy",
        ),
    ],
)
def test_malformed_overlays_are_rejected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(OverlayError, match=message):
        Overlay.from_dict(data, name="bad.yaml")


def test_unreadable_overlay_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("overlay: 1.0.0\nactions: [\n", encoding="utf-8")
    with pytest.raises(OverlayError, match="broken.yaml: cannot read overlay"):
        Overlay.load(path)


def test_update_of_a_scalar_is_an_error() -> None:
    with pytest.raises(OverlayError, match=r"action 0 \(\$\.a\.b\): cannot update a int"):
        _overlay({"target": "$.a.b", "update": {"x": 1}}).apply({"a": {"b": 1}})


# --------------------------------------------------------------------------------------------
# Pinned downloads


def _mirror_with_changed(tmp_path: Path, lock: Lock, file: str) -> tuple[Path, bytes]:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for doc in lock.documents:
        shutil.copyfile(UPSTREAM / doc.file, mirror / doc.file)
    document = json.loads((mirror / file).read_bytes())
    document["info"]["description"] = "Revised upstream."
    changed = json.dumps(document, indent=2).encode()
    (mirror / file).write_bytes(changed)
    return mirror, changed


def test_fetch_verifies_every_document_before_replacing_any(tmp_path: Path) -> None:
    lock = project_lock()
    last = lock.documents[-1].file
    mirror, changed = _mirror_with_changed(tmp_path, lock, last)
    dest = tmp_path / "upstream"
    dest.mkdir()
    (dest / "previous.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ChecksumMismatch) as caught:
        fetch_all(lock, dest, mirror=str(mirror))
    pinned = next(d.sha256 for d in lock.documents if d.file == last)
    assert (caught.value.file, caught.value.expected, caught.value.actual) == (last, pinned, sha256(changed))
    assert sorted(p.name for p in dest.iterdir()) == ["previous.json"]


def test_fetch_without_verification_returns_the_served_hashes(tmp_path: Path) -> None:
    lock = project_lock()
    last = lock.documents[-1].file
    mirror, changed = _mirror_with_changed(tmp_path, lock, last)
    hashes = fetch_all(lock, tmp_path / "upstream", mirror=str(mirror), verify=False)
    assert hashes[last] == sha256(changed)
    assert (tmp_path / "upstream" / last).read_bytes() == changed


def test_fetch_from_a_url_mirror(tmp_path: Path) -> None:
    lock = project_lock()
    with respx.mock(base_url="https://mirror.test/specs", assert_all_called=True) as router:
        for doc in lock.documents:
            router.get(f"/{doc.file}").respond(200, content=(UPSTREAM / doc.file).read_bytes())
        with httpx.Client(transport=httpx.MockTransport(router.handler)) as client:
            hashes = fetch_all(
                lock, tmp_path / "upstream", mirror="https://mirror.test/specs/", reader=http_reader(client)
            )
    assert hashes == {d.file: d.sha256 for d in lock.documents}


def test_fetch_reports_http_errors_with_the_location(tmp_path: Path) -> None:
    lock = project_lock()
    with respx.mock() as router, httpx.Client(transport=httpx.MockTransport(router.handler)) as client:
        router.get(url__startswith="https://mirror.test/").respond(404)
        with pytest.raises(SpecSourceError, match=r"cannot fetch https://mirror\.test/.+: HTTP 404"):
            fetch_all(lock, tmp_path / "upstream", mirror="https://mirror.test", reader=http_reader(client))


def test_source_is_the_official_url_unless_a_mirror_is_set() -> None:
    doc = project_lock().documents[0]
    assert source_of(doc, None) == doc.url
    assert source_of(doc, "https://m.test/x/") == f"https://m.test/x/{doc.file}"
    assert source_of(doc, "/srv/specs") == f"/srv/specs/{doc.file}"


def test_lock_write_changes_only_the_pins(tmp_path: Path) -> None:
    original = (OPENAPI / "sources.lock.json").read_text(encoding="utf-8")
    path = tmp_path / "sources.lock.json"
    path.write_text(original, encoding="utf-8")
    lock = Lock.load(path)
    first = lock.documents[0]
    lock.with_hashes({first.file: "ab" * 32}).write()
    assert path.read_text(encoding="utf-8") == original.replace(first.sha256, "ab" * 32, 1)
    assert Lock.load(path).documents[0].sha256 == "ab" * 32


def test_make_spec_stops_on_a_checksum_mismatch_and_changes_nothing(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lock = project_lock()
    file = lock.documents[0].file
    mirror, changed = _mirror_with_changed(tmp_path, lock, file)
    watched = ("openapi", "amperity_async")
    before = {name: snapshot(project / name) for name in watched}
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "AMPERITY_SPEC_MIRROR": str(mirror)}
    env.pop("AMPERITY_PROJECT_ROOT", None)
    # -o: the shared virtualenv's tooling stamp counts as up to date, so make installs nothing.
    result = subprocess.run(
        ["make", "--no-print-directory", "spec", f"VENV={venv}", "-o", f"{venv}/.tools"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    pinned = lock.documents[0].sha256
    assert f"checksum mismatch for {file}" in result.stderr
    assert f"pinned sha256 {pinned}" in result.stderr
    assert f"downloaded sha256 {sha256(changed)}" in result.stderr
    assert {name: snapshot(project / name) for name in watched} == before


# --------------------------------------------------------------------------------------------
# Generation


def _generation_project(tmp_path: Path, spec: dict[str, Any]) -> Path:
    project = tmp_path / "project"
    (project / "openapi").mkdir(parents=True)
    for name in ("generator-config.yaml", "pyproject.toml"):
        shutil.copyfile(PROJECT / name, project / name)
    shutil.copytree(OPENAPI / "templates", project / "openapi" / "templates")
    (project / "openapi" / "amperity.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return project


def test_generation_is_deterministic(tmp_path: Path) -> None:
    project = _generation_project(tmp_path, normalized_spec())
    first = generate(project, out=tmp_path / "first" / "amperity_async")
    second = generate(project, out=tmp_path / "second" / "amperity_async")
    assert first == second
    assert tree_hash(tmp_path / "first" / "amperity_async") == tree_hash(
        tmp_path / "second" / "amperity_async"
    )
    assert snapshot(tmp_path / "first") == snapshot(tmp_path / "second")
    assert sorted(p.name for p in project.iterdir()) == ["generator-config.yaml", "openapi", "pyproject.toml"]


def test_a_generator_warning_fails_and_keeps_the_previous_package(tmp_path: Path) -> None:
    spec = normalized_spec()
    duplicated = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    spec["paths"]["/indexes/{id}/things/{id}"] = {
        "get": {
            "operationId": "get-thing",
            "tags": ["profiles"],
            "x-amperity-api": "profile",
            "parameters": [duplicated, dict(duplicated)],
            "responses": {"200": {"description": "A thing."}},
        }
    }
    project = _generation_project(tmp_path, spec)
    previous = tmp_path / "out" / "amperity_async"
    previous.mkdir(parents=True)
    (previous / "__init__.py").write_text("# the previous build\n", encoding="utf-8")
    with pytest.raises(
        GenerateError, match=r"(?s)previous package is untouched.*Endpoint will not be generated"
    ):
        generate(project, out=previous)
    assert snapshot(tmp_path / "out") == {"amperity_async/__init__.py": b"# the previous build\n"}
    assert sorted(p.name for p in project.iterdir()) == ["generator-config.yaml", "openapi", "pyproject.toml"]


# --------------------------------------------------------------------------------------------
# Coverage of the generated package


def _module_of(operation_id: str) -> str:
    from amperity_async._operations import OPERATIONS

    return str(OPERATIONS[operation_id]["module"])


def test_every_operation_has_a_generated_module_with_async_functions() -> None:
    spec_operations = operations(normalized_spec())
    assert len(spec_operations) == 22
    by_kind = {
        kind: sorted(
            op_id
            for op_id, (_, _, op) in spec_operations.items()
            if (op["x-amperity-api"], op["x-amperity-stability"]) == kind
        )
        for kind in {
            (op["x-amperity-api"], op["x-amperity-stability"]) for _, _, op in spec_operations.values()
        }
    }
    assert {kind: len(ids) for kind, ids in by_kind.items()} == {
        ("control-plane", "stable"): 9,
        ("control-plane", "unstable"): 1,
        ("profile", "stable"): 4,
        ("realtime", "unstable"): 8,
    }
    for op_id in spec_operations:
        module = importlib.import_module(_module_of(op_id))
        for name in ("asyncio", "asyncio_detailed"):
            assert inspect.iscoroutinefunction(getattr(module, name, None)), f"{module.__name__}.{name}"


def test_generated_modules_are_exactly_the_spec_operations() -> None:
    api = PROJECT / "amperity_async" / "api"
    files = {
        ".".join(("amperity_async",) + p.relative_to(PROJECT / "amperity_async").with_suffix("").parts)
        for p in api.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert files == {_module_of(op_id) for op_id in operations(normalized_spec())}


def test_operations_only_in_the_unstable_document_are_marked_unstable() -> None:
    lock = project_lock()
    by_role = {d.role: d for d in lock.documents if d.api == "control-plane"}

    def endpoints(file: str) -> set[tuple[str, str]]:
        return {(method, path) for method, path, _ in operations(upstream_document(file)).values()}

    unstable_only = endpoints(by_role["unstable"].file) - endpoints(by_role["stable"].file)
    assert unstable_only == {("get", "/campaign-drafts")}
    for op_id, (method, path, op) in operations(normalized_spec()).items():
        if op["x-amperity-api"] != "control-plane":
            continue
        expected = "unstable" if (method, path.removeprefix("/api")) in unstable_only else "stable"
        assert op["x-amperity-stability"] == expected, op_id


def test_the_index_names_modules_as_the_generator_writes_them(tmp_path: Path) -> None:
    """Names a plain snake-case would get wrong: acronyms, reserved words, no operationId."""
    spec = normalized_spec()
    ok = {"200": {"description": "OK"}}
    spec["paths"]["/http-responses"] = {
        "get": {"operationId": "getHTTPResponse", "tags": ["HTTP Things"], "responses": ok},
        "post": {"operationId": "class", "tags": ["HTTP Things"], "responses": ok},
    }
    spec["paths"]["/things/{thing-id}/parts"] = {
        "parameters": [{"name": "thing-id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"tags": ["HTTP Things"], "responses": ok},
    }
    for method in ("get", "post"):
        spec["paths"]["/http-responses"][method]["x-amperity-api"] = "control-plane"
    spec["paths"]["/things/{thing-id}/parts"]["get"]["x-amperity-api"] = "control-plane"
    project = _generation_project(tmp_path, spec)
    out = tmp_path / "out" / "amperity_async"
    generate(project, out=out)

    namespace: dict[str, Any] = {}
    exec((out / "_operations.py").read_text(encoding="utf-8"), namespace)
    index: dict[str, dict[str, Any]] = namespace["OPERATIONS"]
    written = {
        ".".join(("amperity_async",) + p.relative_to(out).with_suffix("").parts)
        for p in (out / "api").rglob("*.py")
        if p.name != "__init__.py"
    }
    assert {entry["module"] for entry in index.values()} == written
    assert index["getHTTPResponse"]["module"] == "amperity_async.api.http_things.get_http_response"
    assert index["class"]["module"] == "amperity_async.api.http_things.class_"
    assert index["get_things_thing_id_parts"]["path"] == "/things/{thing-id}/parts"
