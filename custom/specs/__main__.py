"""Spec pipeline commands used by the Makefile: ``python -m custom.specs COMMAND``.

fetch      download the pinned documents (from $AMPERITY_SPEC_MIRROR when set) and verify them
normalize  apply the overlays and merge into openapi/amperity.json
generate   run the generator on openapi/amperity.json into amperity_async/
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .generate import GenerateError, generate
from .normalize import NormalizeError, normalize, write_json
from .overlay import OverlayError
from .sources import MIRROR_ENV, Lock, SpecSourceError, fetch_all, verify_present


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
    # An overlay shared by several documents may match nothing in one of them; a repair is only
    # suspicious when it matched nothing anywhere (the defect may have been fixed upstream).
    matched: dict[tuple[str, int], int] = {}
    for report in reports:
        matched[(report.overlay, report.index)] = matched.get((report.overlay, report.index), 0) + report.matched
    for report in reports:
        if matched.pop((report.overlay, report.index), 1) == 0:
            print(f"note: {report.overlay} action {report.index} matched nothing ({report.target}); "
                  f"fixed upstream? review the overlay")
    paths = sum(1 for item in document["paths"].values() for k in item if k != "parameters")
    print(f"wrote openapi/amperity.json: {paths} operations, {len(document['components']['schemas'])} schemas")


def cmd_generate(project: Path) -> None:
    digest = generate(project)
    print(f"generated amperity_async/ (tree sha256 {digest})")


COMMANDS = {"fetch": cmd_fetch, "normalize": cmd_normalize, "generate": cmd_generate}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m custom.specs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](_project())
    except (SpecSourceError, OverlayError, NormalizeError, GenerateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
