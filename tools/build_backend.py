"""The PEP 517 build backend: setuptools, once the spec pipeline has generated the package.

``pip install .``, ``pip wheel .``, ``python -m build`` and ``make install`` all come through
here. Before a wheel (or an editable wheel) is built, the pinned documents are fetched (from
``$AMPERITY_SPEC_MIRROR`` when set) and so are the documentation pages the hand-written
documents were written from (from ``$AMPERITY_DOCS_MIRROR`` when set), all checked against their
sha256; then the documents are repaired and the package generated, exactly as ``make`` does;
a step whose output is up to date is skipped. The sdist carries what that needs (the lock,
overlays, templates, the hand-written documents, generator configuration and this folder), never
Amperity's documents or generated code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools

from tools.editable_wheel import write_editable_wheel

# Everything below is setuptools' own, unchanged.
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_sdist = _setuptools.build_sdist

MIRROR_ENV = "AMPERITY_SPEC_MIRROR"
DOCS_MIRROR_ENV = "AMPERITY_DOCS_MIRROR"
# What the spec pipeline imports, by module, with the distribution that provides it.
_PIPELINE_MODULES = {
    "openapi_python_client": "openapi-python-client",
    "ruff": "ruff",
    "yaml": "PyYAML",
    "jsonpath": "python-jsonpath",
    "attrs": "attrs",
    "httpx": "httpx",
}


class BuildError(SystemExit):
    """Ends the build with one message and no traceback (front ends print what the hook wrote)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"\namperity-async build: {message}\n")


def _missing_tools() -> list[str]:
    return [dist for module, dist in _PIPELINE_MODULES.items() if importlib.util.find_spec(module) is None]


def generate_package(project: Path) -> None:
    """Run the spec pipeline in ``project`` (the source tree being built); raise BuildError on failure."""
    missing = _missing_tools()
    if missing:
        raise BuildError(
            f"the build needs {', '.join(missing)} to generate the package (they are listed in "
            f"pyproject.toml's [build-system] requires; with --no-build-isolation install them first)"
        )
    if not (project / "openapi" / "sources.lock.json").is_file():
        raise BuildError(f"{project} has no openapi/sources.lock.json: build from a clone or an sdist")

    from tools.specs.build import PIPELINE_ERRORS, build
    from tools.specs.sources import ChecksumMismatch

    mirror = os.environ.get(MIRROR_ENV) or None
    docs_mirror = os.environ.get(DOCS_MIRROR_ENV) or None
    try:
        build(project, mirror, sys.stderr, docs_mirror)
    except ChecksumMismatch as exc:
        raise BuildError(str(exc)) from exc
    except PIPELINE_ERRORS as exc:
        where = f"${MIRROR_ENV} ({mirror})" if mirror else "the official URLs in openapi/sources.lock.json"
        pages = (
            f"${DOCS_MIRROR_ENV} ({docs_mirror})"
            if docs_mirror
            else f"{mirror}/pages"
            if mirror
            else "their upstream URLs"
        )
        raise BuildError(
            f"{exc}\nThe build generates the package from Amperity's pinned OpenAPI documents, "
            f"fetched from {where}, and checks the documentation pages the hand-written documents "
            f"were written from, fetched from {pages}. Without network access, set {MIRROR_ENV} to "
            f"a folder or URL base holding the documents under the file names of the lock file, and "
            f"{DOCS_MIRROR_ENV} to one holding the pages."
        ) from exc


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    generate_package(Path.cwd())
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    project = Path.cwd()
    generate_package(project)
    if metadata_directory is not None:
        return write_editable_wheel(Path(wheel_directory), Path(metadata_directory), project)
    with tempfile.TemporaryDirectory() as scratch:
        dist_info = _setuptools.prepare_metadata_for_build_editable(scratch, config_settings)
        return write_editable_wheel(Path(wheel_directory), Path(scratch) / dist_info, project)
