"""Clean clones, fresh virtualenvs and commands in them, for the packaging checks.

Everything runs as a new user would: from a ``git clone`` of the committed tree (nothing the
working tree has built comes along), in virtualenvs holding only what pip installed there. The
pinned documents come from this checkout's verified ``openapi/upstream`` folder, used as the
mirror, so the checks need no network beyond the package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

PROJECT = Path(__file__).resolve().parents[1]
MIRROR = PROJECT / "openapi" / "upstream"


def run(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command; the output comes back whatever the exit status (callers assert on it)."""
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def succeed(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = run(args, cwd=cwd, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def build_env(**extra: str) -> dict[str, str]:
    """The environment for builds: the pinned documents from this checkout's verified downloads."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("AMPERITY_PROJECT_ROOT", None)
    return {**env, "AMPERITY_SPEC_MIRROR": str(MIRROR), **extra}


def clean_clone(dest: Path) -> Path:
    """A ``git clone`` of this checkout at its current commit (uncommitted changes are not in it)."""
    head = run(["git", "rev-parse", "HEAD"], cwd=PROJECT)
    if head.returncode != 0:
        pytest.skip("not a git checkout: the packaging checks build from a clone of the committed tree")
    succeed(["git", "clone", "--quiet", "--no-checkout", str(PROJECT), str(dest)], cwd=PROJECT)
    succeed(["git", "checkout", "--quiet", "--detach", head.stdout.strip()], cwd=dest)
    return dest


@attrs.frozen
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.root / "bin" / name

    def pip_install(self, *requirements: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        succeed([str(self.python), "-m", "pip", "install", "--quiet", *requirements], cwd=cwd, env=env)

    def distributions(self) -> set[str]:
        """The names (normalized) of every distribution installed in the virtualenv."""
        listed = succeed([str(self.python), "-m", "pip", "list", "--format", "json"], cwd=self.root)
        return {str(d["name"]).lower().replace("_", "-") for d in json.loads(listed)}

    def python_output(self, code: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
        return succeed([str(self.python), "-c", code], cwd=cwd, env=env)


def fresh_venv(dest: Path) -> Venv:
    """A new virtualenv with nothing but pip (and whatever the interpreter bundles)."""
    base = getattr(sys, "_base_executable", sys.executable)
    succeed([base, "-m", "venv", str(dest)], cwd=dest.parent)
    return Venv(dest)
