"""The hand-written Real-time document in the spec pipeline: pinned by the documentation pages it was
written from (fetched, verified, reported when revised, re-pinned), merged beside Amperity's
documents under its own base path, and indexed with the facts the client layer needs."""

from __future__ import annotations

import copy
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from spec_support import (
    OPENAPI,
    PROJECT,
    UPSTREAM,
    copy_project,
    lock_with_overlays,
    normalized_spec,
    operations,
)

from amperity_async._operations import APIS, OPERATIONS
from amperity_async.custom.errors import ConfigurationError
from tools import build_backend
from tools.build_backend import BuildError, generate_package
from tools.specs.build import fetch
from tools.specs.normalize import NormalizeError, normalize
from tools.specs.sources import ChecksumMismatch, Lock, fetch_pages, page_source, rst_section, sha256
from tools.specs.upstream import CHANGED, INCOMPLETE, SAME, run_check, run_update

PAGES = UPSTREAM / "pages"
RAW = "https://raw.githubusercontent.com/amperity/amperity-docs/main/amperity_api/source/"
EVENTS_PAGE = "endpoint_post_profile_store_events.rst"


def _lock() -> Lock:
    return Lock.load(OPENAPI / "sources.lock.json")


def _docs_mirror(tmp_path: Path, **edits: tuple[str, str]) -> Path:
    """A copy of the pinned pages; ``edits`` maps a page (``.`` for ``_``) to (old, new) text."""
    mirror = tmp_path / "docs"
    shutil.copytree(PAGES, mirror)
    for name, (old, new) in edits.items():
        page = mirror / name.replace("__", ".")
        text = page.read_text(encoding="utf-8")
        assert old in text, f"{old!r} is not in {page.name}"
        page.write_text(text.replace(old, new), encoding="utf-8")
    return mirror


def _spec_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "specs"
    if mirror.is_dir():
        return mirror
    mirror.mkdir()
    for doc in _lock().documents:
        shutil.copyfile(UPSTREAM / doc.file, mirror / doc.file)
    return mirror


def _check(tmp_path: Path, docs: Path | None) -> tuple[int, str]:
    out = io.StringIO()
    status = run_check(
        _lock(),
        str(_spec_mirror(tmp_path)),
        out,
        upstream_dir=UPSTREAM,
        docs_mirror=None if docs is None else str(docs),
    )
    return status, out.getvalue()


# -- the pins ---------------------------------------------------------------------------------------


def test_the_document_is_read_in_place_and_pinned_by_its_pages() -> None:
    lock = _lock()
    (written,) = lock.written
    assert (written.file, written.api, written.version, written.role) == (
        "realtime.json",
        "realtime",
        "unstable",
        "unstable",
    )
    assert lock.document_path(written, UPSTREAM) == OPENAPI / "realtime.json"
    assert written not in lock.documents, "a hand-written document is never downloaded"
    files = [page.file for page in written.pages]
    assert {"endpoints_realtime.rst", EVENTS_PAGE, "endpoint_get_profile_segments.rst"} <= set(files)
    assert len(files) == len(set(files)) == 17
    for page in written.pages:
        assert page.url == RAW + page.file
        assert len(page.sha256) == 64
    (changelog,) = [p for p in written.pages if p.file == "changelog.rst"]
    assert changelog.section == written.changelog_heading == "Real-time API"


def test_a_pages_pin_covers_its_section_only() -> None:
    page = b"""Title
=====

Amperity API: 2024-04-01
========================

* one

Real-time API: unstable
=======================

Sub
---

* two

Profile API: 2025-07-31
=======================
"""
    section = rst_section(page, "Real-time API")
    assert section.startswith(b"Real-time API: unstable\n====") and section.endswith(b"* two\n\n")
    assert b"Profile API" not in section and b"Sub\n---" in section
    assert rst_section(page, "Audiences API") == b""
    assert rst_section(page, "Profile API").endswith(b"=======================\n")


def test_pages_come_from_the_docs_mirror_else_the_spec_mirrors_pages_folder_else_their_url() -> None:
    page = _lock().pages[0]
    assert page_source(page, None, None) == page.url
    assert page_source(page, "/srv/docs", "/srv/specs") == f"/srv/docs/{page.file}"
    assert page_source(page, None, "/srv/specs") == f"/srv/specs/pages/{page.file}"
    assert page_source(page, "https://m.test/docs/", None) == f"https://m.test/docs/{page.file}"


# -- fetching and verifying -------------------------------------------------------------------------


def test_a_revised_page_stops_the_fetch_naming_it_and_both_hashes(tmp_path: Path) -> None:
    docs = _docs_mirror(tmp_path, **{EVENTS_PAGE.replace(".", "__"): ("64 KB", "32 KB")})
    dest = tmp_path / "upstream"
    (dest / "pages").mkdir(parents=True)
    (dest / "pages" / "previous.rst").write_text("kept", encoding="utf-8")
    with pytest.raises(ChecksumMismatch) as caught:
        fetch_pages(_lock(), dest, docs_mirror=str(docs))
    pinned = next(p.sha256 for p in _lock().pages if p.file == EVENTS_PAGE)
    served = sha256((docs / EVENTS_PAGE).read_bytes())
    assert (caught.value.file, caught.value.expected, caught.value.actual) == (EVENTS_PAGE, pinned, served)
    assert "openapi/realtime.json was written from this page" in str(caught.value)
    assert "make update-spec" in str(caught.value)
    assert sorted(p.name for p in (dest / "pages").iterdir()) == ["previous.rst"]


def test_a_revision_outside_the_pinned_changelog_section_is_no_change(tmp_path: Path) -> None:
    docs = _docs_mirror(
        tmp_path, changelog__rst=("Add :doc:`endpoint_get_profile` endpoint.", "Add a thing.")
    )
    digests = fetch_pages(_lock(), tmp_path / "upstream", docs_mirror=str(docs))
    assert all(digests[p.key] == p.sha256 for p in _lock().pages)


def test_a_revised_changelog_section_is_a_change(tmp_path: Path) -> None:
    docs = _docs_mirror(
        tmp_path, changelog__rst=("Add :doc:`endpoint_get_profile_store_history` endpoint.", "Remove it.")
    )
    with pytest.raises(ChecksumMismatch, match=r"changelog\.rst \(its 'Real-time API' section\)"):
        fetch_pages(_lock(), tmp_path / "upstream", docs_mirror=str(docs))


def test_make_spec_fetches_the_pages_from_the_docs_mirror(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    shutil.rmtree(project / "openapi" / "upstream" / "pages")
    out = io.StringIO()
    fetch(project, str(_spec_mirror(tmp_path)), out, str(_docs_mirror(tmp_path)))
    assert "verified 17 documentation pages" in out.getvalue()
    for page in _lock().pages:
        assert (project / "openapi" / "upstream" / "pages" / page.file).read_bytes() == (
            PAGES / page.file
        ).read_bytes()


def test_the_build_says_it_needs_the_pages_and_where_to_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path / "project")
    shutil.rmtree(project / "openapi" / "upstream" / "pages")
    monkeypatch.setenv(build_backend.MIRROR_ENV, str(_spec_mirror(tmp_path)))
    monkeypatch.delenv(build_backend.DOCS_MIRROR_ENV, raising=False)
    with pytest.raises(BuildError) as caught:
        generate_package(project)
    message = str(caught.value.code)
    assert "endpoints_realtime.rst" in message and "AMPERITY_DOCS_MIRROR" in message
    monkeypatch.setenv(build_backend.DOCS_MIRROR_ENV, str(_docs_mirror(tmp_path)))
    generate_package(project)
    assert (project / "openapi" / "upstream" / "pages" / EVENTS_PAGE).is_file()


# -- check-upstream and update-spec -------------------------------------------------------------------


def test_check_upstream_finds_the_pages_unchanged(tmp_path: Path) -> None:
    status, output = _check(tmp_path, _docs_mirror(tmp_path))
    assert status == SAME, output
    assert "unstable realtime.json (hand-written from 17 documentation pages): same" in output


def test_check_upstream_reports_a_revised_realtime_page_with_its_diff(tmp_path: Path) -> None:
    docs = _docs_mirror(
        tmp_path, **{EVENTS_PAGE.replace(".", "__"): ("must not exceed 64 KB", "must not exceed 32 KB")}
    )
    status, output = _check(tmp_path, docs)
    assert status == CHANGED
    assert "unstable realtime.json (hand-written from 17 documentation pages): changed" in output
    assert f"page {EVENTS_PAGE}: changed" in output
    assert f"served {sha256((docs / EVENTS_PAGE).read_bytes())}" in output
    assert "-A request to the **POST /events/{stream-id}** endpoint sends" in output
    assert "must not exceed 32 KB" in output
    assert "review openapi/realtime.json against the revised pages" in output
    assert output.count(": changed") == 2, "only the revised page (and its document) are reported"


def test_check_upstream_reports_the_changelogs_realtime_section(tmp_path: Path) -> None:
    docs = _docs_mirror(tmp_path, changelog__rst=("Real-time API: unstable", "Real-time API: 2027-01-15"))
    status, output = _check(tmp_path, docs)
    assert status == CHANGED
    assert "page changelog.rst (section 'Real-time API'): changed" in output
    assert "+Real-time API: 2027-01-15" in output


def test_check_upstream_counts_a_missing_page_as_not_checked(tmp_path: Path) -> None:
    docs = _docs_mirror(tmp_path)
    (docs / "versioning.rst").unlink()
    status, output = _check(tmp_path, docs)
    assert status == INCOMPLETE
    assert "page versioning.rst: unavailable" in output


def test_check_upstream_command_reads_the_docs_mirror_variable(tmp_path: Path) -> None:
    docs = _docs_mirror(
        tmp_path, **{"endpoint_get_profile_store_stats__rst": ("link_cardinality", "link_counts")}
    )
    env = {
        **os.environ,
        "AMPERITY_PROJECT_ROOT": str(PROJECT),
        "AMPERITY_SPEC_MIRROR": str(_spec_mirror(tmp_path)),
        "AMPERITY_DOCS_MIRROR": str(docs),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tools.specs", "check-upstream"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == CHANGED, result.stdout + result.stderr
    assert "page endpoint_get_profile_store_stats.rst: changed" in result.stdout


def test_update_spec_repins_a_revised_page_and_nothing_else(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    docs = _docs_mirror(
        tmp_path, **{EVENTS_PAGE.replace(".", "__"): ("Retry the request.", "Retry the request later.")}
    )
    lock_file = project / "openapi" / "sources.lock.json"
    before = lock_file.read_text(encoding="utf-8")
    out = io.StringIO()
    assert run_update(project, str(_spec_mirror(tmp_path)), out, docs_mirror=str(docs)) == 0
    output = out.getvalue()
    old_pin = next(p.sha256 for p in _lock().pages if p.file == EVENTS_PAGE)
    new_pin = sha256((docs / EVENTS_PAGE).read_bytes())
    assert f"realtime.json page {EVENTS_PAGE}: changed" in output
    assert f"sha256 {old_pin} -> {new_pin}" in output
    assert "note: openapi/realtime.json was written from this page; review it" in output
    assert lock_file.read_text(encoding="utf-8") == before.replace(old_pin, new_pin)
    assert (project / "openapi" / "upstream" / "pages" / EVENTS_PAGE).read_bytes() == (
        docs / EVENTS_PAGE
    ).read_bytes()
    again = io.StringIO()
    assert run_check(Lock.load(lock_file), str(_spec_mirror(tmp_path)), again, docs_mirror=str(docs)) == SAME


# -- normalization -----------------------------------------------------------------------------------


def test_each_api_lives_under_its_own_base_path() -> None:
    spec = normalized_spec()
    apis = spec["info"]["x-amperity-apis"]
    assert {api: (entry["base_path"], entry["version_header"]) for api, entry in apis.items()} == {
        "control-plane": ("/api", True),
        "profile": ("/api", True),
        "realtime": ("/prof", False),
    }
    assert "default_version" not in apis["realtime"]
    for op_id, (_, path, op) in operations(spec).items():
        assert path.startswith(apis[op["x-amperity-api"]]["base_path"] + "/"), op_id
    assert spec["servers"] == [{"url": "https://app.amperity.com"}]
    assert APIS == {
        api: {"base_path": e["base_path"], "version_header": e["version_header"]} for api, e in apis.items()
    }


def _written_variant(tmp_path: Path, change: Any) -> Lock:
    lock = lock_with_overlays(tmp_path)
    path = tmp_path / "realtime.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    return lock


def test_apis_may_share_a_relative_path(tmp_path: Path) -> None:
    def add_segments(document: dict[str, Any]) -> None:
        document["paths"]["/segments"] = copy.deepcopy(
            document["paths"]["/collections/{collection-id}/stats"]
        )
        operation = document["paths"]["/segments"]["get"]
        operation["operationId"] = "list-realtime-segments"
        operation["parameters"] = operation["parameters"][:1]

    merged, _ = normalize(_written_variant(tmp_path, add_segments), UPSTREAM)
    assert merged["paths"]["/api/segments"]["get"]["operationId"] == "list-segment"
    assert merged["paths"]["/prof/segments"]["get"]["operationId"] == "list-realtime-segments"


def test_a_schema_two_apis_define_differently_is_refused(tmp_path: Path) -> None:
    def redefine(document: dict[str, Any]) -> None:
        document["components"]["schemas"]["Segment"] = {
            "type": "object",
            "properties": {"rule": {"type": "string"}},
        }

    with pytest.raises(
        NormalizeError, match=r"components/schemas/Segment differs .*control-plane API.*realtime\.json$"
    ):
        normalize(_written_variant(tmp_path, redefine), UPSTREAM)


def test_an_api_whose_documents_disagree_on_the_base_path_is_refused(tmp_path: Path) -> None:
    lock = _written_variant(tmp_path, lambda d: d.update(servers=[{"url": "https://app.amperity.com/prof"}]))
    extra = attrs.evolve(lock.written[0], file="second.json", local="second.json")
    (tmp_path / "second.json").write_text(
        json.dumps(
            {
                **json.loads((tmp_path / "realtime.json").read_text()),
                "servers": [{"url": "https://x.test/rt"}],
                "paths": {},
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(NormalizeError, match="disagree on its base_path"):
        normalize(attrs.evolve(lock, written=(*lock.written, extra)), UPSTREAM)


# -- the operation index ------------------------------------------------------------------------------


def test_the_index_carries_what_the_client_layer_needs() -> None:
    send = OPERATIONS["send-event"]
    assert (send["method"], send["path"], send["api"], send["stability"]) == (
        "POST",
        "/prof/events/{stream-id}",
        "realtime",
        "unstable",
    )
    assert (send["max_body_bytes"], send["retryable_statuses"], send["idempotent"]) == (65536, [503], False)
    assert send["success_statuses"] == [202, 204]
    lookup, by_keys = OPERATIONS["lookup-profile"], OPERATIONS["lookup-profile-by-keys"]
    assert (lookup["form_query"], lookup["query"], lookup["no_match_status"]) == (
        ["keys"],
        ["keys", "_enrich"],
        404,
    )
    assert (by_keys["idempotent"], by_keys["no_match_status"], by_keys["retryable_statuses"]) == (
        True,
        404,
        [],
    )
    assert OPERATIONS["get-collection-profile"]["no_match_status"] == 404
    assert OPERATIONS["list-profile-segments"]["paginated"] is True
    assert (
        OPERATIONS["list-segment-members"]["returns_list"],
        OPERATIONS["list-segment-members"]["paginated"],
    ) == (True, False)
    history = OPERATIONS["get-collection-history"]
    assert (history["returns_list"], history["item_key"], history["time_windows"]) == (False, None, [])
    # The control plane keeps its facts.
    assert (
        OPERATIONS["run-workflow"]["idempotent"] is False
        and OPERATIONS["run-workflow"]["max_body_bytes"] is None
    )
    assert OPERATIONS["list-segment"]["path"] == "/api/segments"
    assert all(op["no_match_status"] is None for op_id, op in OPERATIONS.items() if op["api"] != "realtime")


def test_the_generated_lookup_refuses_a_key_named_like_its_other_parameter() -> None:
    module = importlib.import_module(OPERATIONS["lookup-profile"]["module"])
    from amperity_async.models import KeychainKeys

    kwargs = module._get_kwargs(
        "pc-customers", keys=KeychainKeys.from_dict({"email": "a+b@example.com"}), field_enrich=True
    )
    assert kwargs["params"] == {"email": "a+b@example.com", "_enrich": True}
    with pytest.raises(ConfigurationError, match=r"keys cannot hold '_enrich'"):
        module._get_kwargs("pc-customers", keys=KeychainKeys.from_dict({"_enrich": "x"}))
