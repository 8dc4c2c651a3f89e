"""Spec pipeline commands used by the Makefile: ``python -m tools.specs COMMAND``.

build      fetch what is missing, normalize, and regenerate amperity_async/ unless it is up to date
           (what make install and the package build run)
fetch      download the pinned documents (from $AMPERITY_SPEC_MIRROR when set) and the pages the
           hand-written documents were written from (from $AMPERITY_DOCS_MIRROR when set), and
           verify them
normalize  apply the overlays and merge into openapi/amperity.json
generate   run the generator on openapi/amperity.json into amperity_async/
check-upstream  compare the pins (documents and pages) with what upstream (or the mirror)
           serves now and with the changelog's version headings; exit 0 only when nothing changed
update     accept what upstream serves now: re-pin, re-normalize, regenerate, print what changed

The project is the repository holding this folder (``AMPERITY_PROJECT_ROOT`` overrides it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .build import PIPELINE_ERRORS, build, fetch, lock_path, write_normalized
from .generate import generate
from .sources import DOCS_MIRROR_ENV, MIRROR_ENV, Lock
from .upstream import run_check, run_update


def _project() -> Path:
    return Path(os.environ.get("AMPERITY_PROJECT_ROOT") or Path(__file__).resolve().parents[2])


def _mirror() -> str | None:
    return os.environ.get(MIRROR_ENV) or None


def _docs_mirror() -> str | None:
    return os.environ.get(DOCS_MIRROR_ENV) or None


def cmd_build(project: Path) -> None:
    build(project, _mirror(), sys.stdout, _docs_mirror())


def cmd_fetch(project: Path) -> None:
    fetch(project, _mirror(), sys.stdout, _docs_mirror())


def cmd_normalize(project: Path) -> None:
    write_normalized(project, sys.stdout)


def cmd_generate(project: Path) -> None:
    digest = generate(project)
    print(f"generated amperity_async/ (tree sha256 {digest})")


def cmd_check_upstream(project: Path) -> int:
    return run_check(Lock.load(lock_path(project)), _mirror(), sys.stdout, docs_mirror=_docs_mirror())


def cmd_update(project: Path) -> int:
    try:
        return run_update(project, _mirror(), sys.stdout, docs_mirror=_docs_mirror())
    except PIPELINE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("update abandoned: the pins and the previous build are unchanged", file=sys.stderr)
        return 1


COMMANDS: dict[str, Callable[[Path], int | None]] = {
    "build": cmd_build,
    "fetch": cmd_fetch,
    "normalize": cmd_normalize,
    "generate": cmd_generate,
    "check-upstream": cmd_check_upstream,
    "update": cmd_update,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.specs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        status = COMMANDS[args.command](_project())
    except PIPELINE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
