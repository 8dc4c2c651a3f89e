"""check-upstream and update-spec, offline: local mirrors, respx-mocked official URLs, temp projects."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import respx
from spec_support import PROJECT, UPSTREAM, copy_project, project_lock, snapshot, upstream_document

from tools.specs.sources import Lock, sha256
from tools.specs.upstream import (
    CHANGED,
    INCOMPLETE,
    SAME,
    changelog_location,
    changelog_versions,
    check_changelog,
    check_document,
    diff_documents,
    run_check,
    run_update,
)

STABLE = "control-plane-2024-04-01-openapi.json"
UNSTABLE = "control-plane-unstable-openapi.json"
PROFILE = "openapi-profile-v2.json"


def changelog_page(*headings: str) -> str:
    """A changelog page as the documentation site renders it (permalink signs, nested markup)."""
    sections = "\n".join(
        f'<section id="s{i}"><h2><span>{h}</span><a class="headerlink" href="#s{i}">\u00b6</a></h2>'
        f"<p>Release notes for {h}.</p></section>"
        for i, h in enumerate(headings)
    )
    return f"<html><head><title>Changelog</title></head><body><h1>API changelog</h1>{sections}</body></html>"


PINNED_CHANGELOG_HEADINGS = ("Profile API: 2025-07-31", "Amperity API: 2024-04-01")
PINNED_CHANGELOG = changelog_page(*PINNED_CHANGELOG_HEADINGS)


# --------------------------------------------------------------------------------------------
# Pure comparisons


def _doc(paths: dict[str, Any], schemas: dict[str, Any] | None = None, version: str = "1") -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"version": version},
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def test_diff_names_added_removed_and_changed_operations_and_schemas() -> None:
    old = _doc(
        {
            "/a": {"get": {"operationId": "list-a", "responses": {"200": {"description": "ok"}}}},
            "/b": {"get": {"operationId": "get-b", "responses": {}}, "delete": {"responses": {}}},
        },
        {"A": {"type": "object"}, "Gone": {"type": "string"}},
    )
    new = copy.deepcopy(old)
    new["paths"]["/a"]["get"]["parameters"] = [
        {"name": "limit", "in": "query", "schema": {"type": "integer"}}
    ]
    del new["paths"]["/b"]["delete"]
    new["paths"]["/c"] = {"post": {"operationId": "make-c", "responses": {}}}
    new["components"]["schemas"]["A"]["properties"] = {"x": {"type": "string"}}
    del new["components"]["schemas"]["Gone"]
    new["components"]["schemas"]["C"] = {"type": "object"}

    diff = diff_documents(old, new)
    assert diff.operations_added == ("make-c (POST /c)",)
    assert diff.operations_removed == ("DELETE /b",)
    assert diff.operations_changed == ("list-a (GET /a): parameters",)
    assert (diff.schemas_added, diff.schemas_removed, diff.schemas_changed) == (
        ("C",),
        ("Gone",),
        ("A: properties",),
    )
    assert diff.lines() == [
        "added operation make-c (POST /c)",
        "removed operation DELETE /b",
        "changed operation list-a (GET /a): parameters",
        "added schema C",
        "removed schema Gone",
        "changed schema A: properties",
    ]
    assert not diff.empty


def test_diff_follows_an_operation_that_moved_and_tells_prose_from_shape() -> None:
    old = _doc({"/x/{id}": {"get": {"operationId": "get-x", "description": "Old words.", "responses": {}}}})
    new = _doc({"/x/{x_id}": {"get": {"operationId": "get-x", "description": "New words.", "responses": {}}}})
    assert diff_documents(old, new).operations_changed == (
        "get-x (GET /x/{id}) -> get-x (GET /x/{x_id}): descriptions only",
    )


def test_diff_reports_version_and_shared_components() -> None:
    old = _doc({}, version="2024-04-01")
    old["components"]["parameters"] = {"Limit": {"name": "limit"}, "Old": {"name": "old"}}
    new = _doc({}, version="2025-01-15")
    new["components"]["parameters"] = {"Limit": {"name": "limit", "required": True}, "New": {"name": "new"}}
    assert diff_documents(old, new).other_changed == (
        "info.version: 2024-04-01 -> 2025-01-15",
        "components/parameters/Limit",
        "components/parameters/New (added)",
        "components/parameters/Old (removed)",
    )


def test_identical_documents_have_an_empty_diff() -> None:
    document = upstream_document(PROFILE)
    diff = diff_documents(document, copy.deepcopy(document))
    assert diff.empty
    assert diff.lines() == []


def test_changelog_headings_give_versions_per_api() -> None:
    html = (
        changelog_page(
            "Profile API: 2025-07-31",
            "Amperity API: 2025-10-01",
            "Amperity API: 2024-04-01",
            "Deprecation notices",
            "Amperity API: unstable",
        )
        + "<p>Amperity API: 2030-01-01 is mentioned in prose only.</p>"
    )
    assert changelog_versions(html) == {
        "Amperity API": ("2024-04-01", "2025-10-01"),
        "Profile API": ("2025-07-31",),
    }


def test_changelog_headings_with_entities_and_levels() -> None:
    html = "<h3>Profile&nbsp;API&#58; 2026-02-01 (beta)</h3><h4>Amperity API : 2024-04-01</h4><h2>Other</h2>"
    assert changelog_versions(html) == {"Profile API": ("2026-02-01",), "Amperity API": ("2024-04-01",)}


def test_new_version_announced_per_api() -> None:
    checks = check_changelog(
        project_lock().documents, changelog_page("Amperity API: 2025-10-01", *PINNED_CHANGELOG_HEADINGS)
    )
    by_api = {c.api: c for c in checks}
    assert by_api["control-plane"].new_versions == ("2025-10-01",)
    assert by_api["control-plane"].pinned == ("2024-04-01",)
    assert by_api["profile"].new_versions == ()
    assert by_api["profile"].announced == ("2025-07-31",)


def test_changelog_without_the_api_heading_is_not_a_verdict() -> None:
    (check,) = [
        c
        for c in check_changelog(project_lock().documents, changelog_page("Profile API: 2025-07-31"))
        if c.api == "control-plane"
    ]
    assert check.announced is None
    assert "no 'Amperity API: <YYYY-MM-DD>' heading" in check.note


def test_document_check_same_and_changed() -> None:
    doc = next(d for d in project_lock().documents if d.file == PROFILE)
    pinned = (UPSTREAM / PROFILE).read_bytes()
    assert check_document(doc, pinned, pinned).state == "same"

    served = upstream_document(PROFILE)
    served["components"]["schemas"]["Segmentless"] = {"type": "object"}
    body = json.dumps(served).encode()
    changed = check_document(doc, body, pinned)
    assert (changed.state, changed.served_sha256) == ("changed", sha256(body))
    assert changed.diff is not None and changed.diff.schemas_added == ("Segmentless",)

    unknown = check_document(doc, body, None)
    assert unknown.state == "changed" and unknown.diff is None
    assert "no pinned copy" in unknown.note


def test_changelog_location_prefers_the_mirror() -> None:
    lock = project_lock()
    assert changelog_location(lock, None) == lock.changelog
    assert changelog_location(lock, "/srv/specs") == "/srv/specs/changelog.html"
    assert changelog_location(lock, "https://m.test/specs/") == "https://m.test/specs/changelog.html"


# --------------------------------------------------------------------------------------------
# run_check against a local mirror


def _mirror(tmp_path: Path, *, changelog: str | None = PINNED_CHANGELOG) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for doc in project_lock().documents:
        shutil.copyfile(UPSTREAM / doc.file, mirror / doc.file)
    # The pages the hand-written documents follow, where a mirror of openapi/upstream holds them.
    shutil.copytree(UPSTREAM / "pages", mirror / "pages")
    if changelog is not None:
        (mirror / "changelog.html").write_text(changelog, encoding="utf-8")
    return mirror


def _check(mirror: Path | str | None, client: httpx.Client | None = None) -> tuple[int, str]:
    out = io.StringIO()
    status = run_check(
        project_lock(), None if mirror is None else str(mirror), out, upstream_dir=UPSTREAM, client=client
    )
    return status, out.getvalue()


def test_check_reports_same_when_nothing_changed(tmp_path: Path) -> None:
    status, output = _check(_mirror(tmp_path))
    assert status == SAME
    for doc in project_lock().documents:
        assert f"{doc.version} {doc.file}: same" in output
    assert "changelog: no version newer than the pinned 2024-04-01" in output
    assert "changelog: no version newer than the pinned 2025-07-31" in output
    assert "result: the pinned documents are what upstream serves" in output


def test_check_without_a_changelog_in_the_mirror_says_so(tmp_path: Path) -> None:
    status, output = _check(_mirror(tmp_path, changelog=None))
    assert status == SAME
    assert "changelog not checked: the mirror has no changelog.html" in output


def test_check_reports_a_new_version_announced(tmp_path: Path) -> None:
    mirror = _mirror(
        tmp_path, changelog=changelog_page("Amperity API: 2025-10-01", *PINNED_CHANGELOG_HEADINGS)
    )
    status, output = _check(mirror)
    assert status == CHANGED
    assert "new version announced: 2025-10-01 (pinned 2024-04-01)" in output
    assert f"2024-04-01 {STABLE}: same" in output


def test_check_reports_a_changed_document(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    document = upstream_document(UNSTABLE)
    document["paths"]["/campaign-drafts/{id}"] = {
        "get": {"operationId": "get-campaign-draft", "responses": {"200": {"description": "A draft."}}}
    }
    del document["paths"]["/segments"]
    removed_schema = min(document["components"]["schemas"])
    del document["components"]["schemas"][removed_schema]
    (mirror / UNSTABLE).write_text(json.dumps(document), encoding="utf-8")

    status, output = _check(mirror)
    assert status == CHANGED
    assert f"unstable {UNSTABLE}: changed" in output
    assert f"served {sha256((mirror / UNSTABLE).read_bytes())}" in output
    assert "added operation get-campaign-draft (GET /campaign-drafts/{id})" in output
    assert "removed operation list-segment (GET /segments)" in output
    assert f"removed schema {removed_schema}" in output
    assert f"2024-04-01 {STABLE}: same" in output


def test_check_reports_a_document_it_cannot_fetch(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    (mirror / PROFILE).unlink()
    status, output = _check(mirror)
    assert status == INCOMPLETE
    assert f"2025-07-31 {PROFILE}: unavailable" in output
    assert "result: not every document could be checked" in output


# --------------------------------------------------------------------------------------------
# run_check against the official URLs (respx)


def _official(router: respx.Router, changelog: httpx.Response) -> None:
    lock = project_lock()
    for doc in lock.documents:
        router.get(doc.url).respond(200, content=(UPSTREAM / doc.file).read_bytes())
    for page in lock.pages:
        router.get(page.url).respond(200, content=(UPSTREAM / "pages" / page.file).read_bytes())
    router.get(lock.changelog).mock(return_value=changelog)


def test_check_against_official_urls_with_a_new_profile_version() -> None:
    router = respx.Router(assert_all_mocked=True)
    page = changelog_page("Profile API: 2026-03-01", *PINNED_CHANGELOG_HEADINGS)
    _official(router, httpx.Response(200, text=page))
    with httpx.Client(transport=httpx.MockTransport(router.handler)) as client:
        status, output = _check(None, client)
    assert status == CHANGED
    assert "profile (Profile API):" in output
    assert "new version announced: 2026-03-01 (pinned 2025-07-31)" in output
    assert len(router.calls) == len(project_lock().documents) + len(project_lock().pages) + 1


def test_check_against_official_urls_when_the_changelog_is_down() -> None:
    router = respx.Router(assert_all_mocked=True)
    _official(router, httpx.Response(503))
    with httpx.Client(transport=httpx.MockTransport(router.handler)) as client:
        status, output = _check(None, client)
    assert status == SAME
    assert "changelog not checked: the changelog page could not be fetched" in output
    assert "HTTP 503" in output


# --------------------------------------------------------------------------------------------
# update


def _changed_unstable(mirror: Path) -> bytes:
    """The unstable document with one more operation, as Amperity would add one."""
    document = upstream_document(UNSTABLE)
    drafts = document["paths"]["/campaign-drafts"]["get"]
    headers = [
        p for p in drafts["parameters"] if p.get("$ref", "").endswith(("ApiVersionHeader", "AmperityTenant"))
    ]
    draft_id = {"name": "draft-id", "in": "path", "required": True, "schema": {"type": "string"}}
    document["paths"]["/campaign-drafts/{draft-id}"] = {
        "get": {
            "operationId": "get-campaign-draft",
            "tags": drafts["tags"],
            "parameters": [*headers, draft_id],
            "responses": drafts["responses"],
        }
    }
    body = json.dumps(document, indent=2).encode()
    (mirror / UNSTABLE).write_bytes(body)
    return body


def test_update_repins_regenerates_and_prints_the_changes(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    mirror = _mirror(tmp_path)
    body = _changed_unstable(mirror)
    lock_before = (project / "openapi" / "sources.lock.json").read_text(encoding="utf-8")
    out = io.StringIO()

    assert run_update(project, str(mirror), out) == 0

    output = out.getvalue()
    old_pin = next(d.sha256 for d in project_lock().documents if d.file == UNSTABLE)
    assert f"control-plane unstable {UNSTABLE}: changed" in output
    assert f"sha256 {old_pin} -> {sha256(body)}" in output
    assert "added operation get-campaign-draft (GET /campaign-drafts/{draft-id})" in output
    assert f"control-plane 2024-04-01 {STABLE}: same" in output
    assert (project / "openapi" / "sources.lock.json").read_text(encoding="utf-8") == lock_before.replace(
        old_pin, sha256(body)
    )
    assert (project / "openapi" / "upstream" / UNSTABLE).read_bytes() == body
    spec = json.loads((project / "openapi" / "amperity.json").read_text(encoding="utf-8"))
    operation = spec["paths"]["/api/campaign-drafts/{draft-id}"]["get"]
    assert (operation["x-amperity-stability"], operation["x-amperity-api"]) == ("unstable", "control-plane")
    generated = project / "amperity_async" / "api" / "campaigns" / "get_campaign_draft.py"
    assert "async def asyncio_detailed(" in generated.read_text(encoding="utf-8")
    assert not list(project.glob(".update-spec-*")) and not list(project.glob(".generate-staging-*"))
    # The pins now match what is served: a check finds nothing.
    check = io.StringIO()
    assert run_check(Lock.load(project / "openapi" / "sources.lock.json"), str(mirror), check) == SAME


def test_update_with_nothing_new_changes_nothing(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    before = snapshot(project)
    out = io.StringIO()
    assert run_update(project, str(_mirror(tmp_path)), out) == 0
    assert out.getvalue() == "upstream serves the pinned documents; nothing to update\n"
    assert snapshot(project) == before


def test_failed_update_leaves_the_pins_and_the_build_untouched(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    mirror = _mirror(tmp_path)
    document = upstream_document(PROFILE)
    # A new operation with a duplicated path parameter: the generator would skip it.
    get_index = document["paths"]["/indexes/{id}"]["get"]
    document["paths"]["/indexes/{id}/segments/{id}"] = {
        "get": {**get_index, "operationId": "get-index-segment"}
    }
    document["paths"]["/indexes/{id}/segments/{id}"]["get"]["parameters"] = get_index["parameters"] * 2
    (mirror / PROFILE).write_text(json.dumps(document), encoding="utf-8")
    before = snapshot(project)
    env = {**os.environ, "AMPERITY_PROJECT_ROOT": str(project), "AMPERITY_SPEC_MIRROR": str(mirror)}

    result = subprocess.run(
        [sys.executable, "-m", "tools.specs", "update"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Endpoint will not be generated" in result.stderr
    assert "update abandoned: the pins and the previous build are unchanged" in result.stderr
    assert snapshot(project) == before
    assert sorted(p.name for p in project.iterdir()) == sorted(
        [
            "Makefile",
            "generator-config.yaml",
            "custom",
            "tools",
            "openapi",
            "amperity_async",
            "pyproject.toml",
        ]
    )


def test_check_upstream_command_exit_status(tmp_path: Path) -> None:
    mirror = _mirror(
        tmp_path, changelog=changelog_page("Amperity API: 2025-10-01", *PINNED_CHANGELOG_HEADINGS)
    )
    env = {**os.environ, "AMPERITY_PROJECT_ROOT": str(PROJECT), "AMPERITY_SPEC_MIRROR": str(mirror)}
    result = subprocess.run(
        [sys.executable, "-m", "tools.specs", "check-upstream"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == CHANGED, result.stderr
    assert "new version announced: 2025-10-01" in result.stdout


# A program run inside the updated project: the client and the CLI against a server that records the
# api-version each request carries.
_SENT_VERSIONS = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx

from amperity_async import AmperityClient
from amperity_async.custom.cli import main

seen = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("api-version"))
        body = json.dumps({"data": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base_url = f"http://127.0.0.1:{server.server_address[1]}/api"


async def with_the_client():
    async with AmperityClient(tenant="acme", auth="a-fixed-token", base_url=base_url) as client:
        await client.segments.list(limit=1)

anyio.run(with_the_client)
status = main(["extract", "list_segment", "--out", "-", "--tenant", "acme", "--token", "a-fixed-token",
               "--base-url", base_url])
server.shutdown()
print(json.dumps({"status": status, "versions": seen}))
"""


def test_update_to_a_new_version_changes_what_the_client_and_the_cli_send(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    mirror = _mirror(tmp_path)
    new_version, new_file = "2026-12-01", "control-plane-2026-12-01-openapi.json"
    document = upstream_document(STABLE)
    document["info"]["version"] = new_version
    (mirror / new_file).write_text(json.dumps(document, indent=2), encoding="utf-8")
    # What the README asks of a maintainer for a new version: edit its lock entry, then update.
    lock_path = project / "openapi" / "sources.lock.json"
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    (entry,) = [d for d in lock["documents"] if d["file"] == STABLE]
    entry.update(version=new_version, file=new_file, url=entry["url"].replace(STABLE, new_file))
    lock_path.write_text(json.dumps(lock, indent=2), encoding="utf-8")

    assert run_update(project, str(mirror), io.StringIO()) == 0

    env = {**os.environ, "PYTHONPATH": str(project), "AMPERITY_BASE_URL": ""}
    result = subprocess.run(
        [sys.executable, "-c", _SENT_VERSIONS],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"status": 0, "versions": [new_version, new_version]}
