"""Print pyproject.toml's build requirements, one a line: what make installs into .venv.

The editable install builds without isolation (so make and the build use the same pinned
generator), which needs the build backend's requirements installed first; they are listed once,
in ``[build-system] requires``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def build_requirements(pyproject: Path) -> list[str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [str(requirement) for requirement in data["build-system"]["requires"]]


if __name__ == "__main__":
    project = Path(__file__).resolve().parents[1]
    sys.stdout.write("".join(f"{line}\n" for line in build_requirements(project / "pyproject.toml")))
