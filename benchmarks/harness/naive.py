"""A naive client for comparison: openapi-python-client run with its default settings on Amperity's
official documents (no overlays, no templates), into a scratch folder; never kept.

This is what a user gets by pointing the generator at the downloads: default httpx, generated
models, no limits or retries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .processes import BenchmarkError
from .settings import ROOT

UPSTREAM = ROOT / "openapi" / "upstream"
# The documents the generated segment and profile calls come from (pinned in openapi/sources.lock.json).
CONTROL_PLANE_DOCUMENT = "control-plane-2024-04-01-openapi.json"
PROFILE_DOCUMENT = "openapi-profile-v2.json"


def generator() -> Path | None:
    """The openapi-python-client command of this environment (a dev dependency), if installed."""
    beside = Path(sys.executable).with_name("openapi-python-client")
    if beside.is_file():
        return beside
    found = shutil.which("openapi-python-client")
    return Path(found) if found else None


def generate(scratch: Path) -> dict[str, str]:
    """Generate a package per document; {"segment" | "profile": folder holding the package}."""
    command = generator()
    if command is None:
        raise BenchmarkError("openapi-python-client is not installed (pip install openapi-python-client)")
    # Its default post-generation hooks run ruff, which lives beside the interpreter.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    folders = {}
    for kind, document in (("segment", CONTROL_PLANE_DOCUMENT), ("profile", PROFILE_DOCUMENT)):
        source = UPSTREAM / document
        if not source.is_file():
            raise BenchmarkError(f"{source} is missing: run `make spec` first")
        out = scratch / f"naive-{kind}"
        proc = subprocess.run(
            [str(command), "generate", "--path", str(source), "--output-path", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not out.is_dir():
            raise BenchmarkError(
                f"openapi-python-client failed on {document}:\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        folders[kind] = str(out)
    return folders


def package_name(folder: str) -> str:
    """The importable package the generator wrote into ``folder`` (named after the document's title)."""
    for candidate in sorted(Path(folder).iterdir()):
        if (candidate / "client.py").is_file() and (candidate / "api").is_dir():
            return candidate.name
    raise BenchmarkError(f"no generated package in {folder}: {json.dumps(sorted(os.listdir(folder)))}")
