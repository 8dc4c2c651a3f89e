"""The build backend's own parts: the static-path editable wheel, its refusals, and the pipeline's
up-to-date checks (the full builds are in test_packaging.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
from spec_support import copy_project

from tools import build_backend
from tools.build_backend import BuildError, generate_package
from tools.editable_wheel import LINK_FOLDER, link_package, write_editable_wheel
from tools.specs.build import build
from tools.specs.generate import INPUTS_STAMP, generated_from


def _dist_info(root: Path) -> Path:
    dist_info = root / "amperity_async-1.2.3.dist-info"
    (dist_info / "licenses").mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.4\nName: amperity-async\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text("[console_scripts]\namperity-async = x:main\n")
    (dist_info / "licenses" / "LICENSE").write_text("Apache License\n")
    (dist_info / "RECORD").write_text("stale,,\n")
    return dist_info


def test_the_editable_wheel_is_one_static_path_and_a_valid_record(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "amperity_async").mkdir(parents=True)
    (project / "amperity_async" / "__init__.py").write_text("")
    name = write_editable_wheel(tmp_path / "out", _dist_info(tmp_path / "meta"), project)

    assert name == "amperity_async-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / "out" / name) as wheel:
        files = {info.filename: wheel.read(info) for info in wheel.infolist()}
    pth = files.pop("__editable__.amperity_async-1.2.3.pth").decode()
    # One absolute folder, no import hook: what type checkers follow.
    assert pth == f"{project.resolve() / LINK_FOLDER}\n"
    assert not any(line.startswith("import") for line in pth.splitlines())
    assert (project / LINK_FOLDER / "amperity_async" / "__init__.py").is_file()
    assert sorted(os.listdir(project / LINK_FOLDER)) == ["amperity_async"]

    record = files["amperity_async-1.2.3.dist-info/RECORD"].decode().splitlines()
    entries = {line.split(",")[0]: line.split(",", 1)[1] for line in record}
    assert entries.pop("amperity_async-1.2.3.dist-info/RECORD") == ","
    assert set(entries) == set(files) - {"amperity_async-1.2.3.dist-info/RECORD"} | {
        "__editable__.amperity_async-1.2.3.pth"
    }
    for arcname, entry in entries.items():
        data = files.get(arcname, pth.encode())
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert entry == f"sha256={digest},{len(data)}", arcname
    wheel_meta = files["amperity_async-1.2.3.dist-info/WHEEL"].decode()
    assert "Root-Is-Purelib: true" in wheel_meta and "Tag: py3-none-any" in wheel_meta
    assert files["amperity_async-1.2.3.dist-info/licenses/LICENSE"] == b"Apache License\n"


def test_the_link_follows_a_moved_project_and_replaces_a_stale_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "amperity_async").mkdir(parents=True)
    folder = link_package(project)
    assert link_package(project) == folder
    link = folder / "amperity_async"
    link.unlink()
    link.symlink_to(tmp_path, target_is_directory=True)  # e.g. left by another checkout
    link_package(project)
    assert link.resolve() == (project / "amperity_async").resolve()


def test_metadata_that_is_not_a_dist_info_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a .dist-info folder"):
        write_editable_wheel(tmp_path / "out", tmp_path, tmp_path)


def test_missing_build_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(build_backend._PIPELINE_MODULES, "no_such_module_xyz", "no-such-generator")
    with pytest.raises(BuildError) as caught:
        generate_package(tmp_path)
    assert "the build needs no-such-generator" in str(caught.value.code)
    assert "--no-build-isolation" in str(caught.value.code)


def test_a_tree_without_the_lock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="has no openapi/sources.lock.json"):
        generate_package(tmp_path)


def test_a_checksum_mismatch_stops_the_build_naming_both_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path / "project")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for document in (project / "openapi" / "upstream").glob("*.json"):
        (mirror / document.name).write_bytes(document.read_bytes() + b"\n")
        document.unlink()  # nothing downloaded yet, as in a clean clone
    monkeypatch.setenv("AMPERITY_SPEC_MIRROR", str(mirror))
    package_before = (project / "amperity_async" / "__init__.py").read_bytes()
    with pytest.raises(BuildError) as caught:
        generate_package(project)
    message = str(caught.value.code)
    assert (
        "checksum mismatch for" in message and "pinned sha256" in message and "downloaded sha256" in message
    )
    assert (project / "amperity_async" / "__init__.py").read_bytes() == package_before


def test_build_skips_what_is_up_to_date_and_regenerates_when_a_template_changes(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    package = project / "amperity_async"
    stamp_before = generated_from(package)
    out = io.StringIO()
    build(project, None, out)
    assert "amperity_async/ is up to date" in out.getvalue()
    assert "unchanged openapi/amperity.json" in out.getvalue()
    assert generated_from(package) == stamp_before

    template = project / "openapi" / "templates" / "package_init.py.jinja"
    template.write_text(template.read_text(encoding="utf-8") + "\nTEMPLATE_EDITED = True\n", encoding="utf-8")
    out = io.StringIO()
    build(project, None, out)
    assert "generated amperity_async/" in out.getvalue()
    assert "TEMPLATE_EDITED = True" in (package / "__init__.py").read_text(encoding="utf-8")
    assert generated_from(package) not in (None, stamp_before)
    assert (package / INPUTS_STAMP).is_file()


def test_build_fetches_missing_documents_from_the_mirror(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    upstream = project / "openapi" / "upstream"
    mirror = tmp_path / "mirror"
    upstream.rename(mirror)
    out = io.StringIO()
    build(project, str(mirror), out)
    assert sorted(p.name for p in upstream.glob("*.json")) == sorted(p.name for p in mirror.glob("*.json"))
    assert out.getvalue().count("ok  ") == len(list(mirror.glob("*.json")))
    assert "amperity_async/ is up to date" in out.getvalue()
