"""Spec pipeline commands used by the Makefile: ``python -m custom.specs COMMAND``.

fetch      download the pinned documents (from $AMPERITY_SPEC_MIRROR when set) and verify them
normalize  apply the overlays and merge into openapi/amperity.json
generate   run the generator on openapi/amperity.json into amperity_async/
check-upstream  compare the pins with what upstream (or the mirror) serves now and with the
           changelog's version headings; exit 0 only when nothing changed
update     accept what upstream serves now: re-pin, re-normalize, regenerate, print what changed
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .generate import GenerateError, generate
from .normalize import NormalizeError, normalize, unmatched_repairs, write_json
from .overlay import OverlayError
from .sources import MIRROR_ENV, Lock, SpecSourceError, fetch_all, verify_present
from .upstream import run_check, run_update


def _project() -> Path:
    return Path(os.environ.get("AMPERITY_PROJECT_ROOT", Path.cwd()))


def cmd_fetch(project: Path) -> None:
    lock = Lock.load(project / "openapi" / "sources.lock.json")
    mirror = os.environ.get(MIRROR_ENV) or None
    hashes = fetch_all(lock, project / "openapi" / "upstream", mirror=mirror)
    for name, digest in hashes.items():
        print(f"ok  {name}  sha256 {digest}")


def cmd_normalize(project: Path) -> None:
    lock = Lock.load(project / "openapi" / "sources.lock.json")
    upstream = project / "openapi" / "upstream"
    verify_present(lock, upstream)
    document, reports = normalize(lock, upstream)
    write_json(project / "openapi" / "amperity.json", document)
    for report in unmatched_repairs(reports):
        print(
            f"note: {report.overlay} action {report.index} matched nothing ({report.target}); "
            f"fixed upstream? review the overlay"
        )
    paths = sum(1 for item in document["paths"].values() for k in item if k != "parameters")
    print(
        f"wrote openapi/amperity.json: {paths} operations, {len(document['components']['schemas'])} schemas"
    )


def cmd_generate(project: Path) -> int:
    digest = generate(project)
    print(f"generated amperity_async/ (tree sha256 {digest})")
    return 0


def cmd_check_upstream(project: Path) -> int:
    lock = Lock.load(project / "openapi" / "sources.lock.json")
    return run_check(lock, os.environ.get(MIRROR_ENV) or None, sys.stdout)


def cmd_update(project: Path) -> int:
    try:
        return run_update(project, os.environ.get(MIRROR_ENV) or None, sys.stdout)
    except (SpecSourceError, OverlayError, NormalizeError, GenerateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("update abandoned: the pins and the previous build are unchanged", file=sys.stderr)
        return 1


COMMANDS: dict[str, Callable[[Path], int | None]] = {
    "fetch": cmd_fetch,
    "normalize": cmd_normalize,
    "generate": cmd_generate,
    "check-upstream": cmd_check_upstream,
    "update": cmd_update,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m custom.specs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        status = COMMANDS[args.command](_project())
    except (SpecSourceError, OverlayError, NormalizeError, GenerateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
