"""From the pins to the generated package in one call, for ``make`` and the build backend alike.

Each step is skipped when what it would produce is already there: downloads that match their
pins are not fetched again, an unchanged normalized spec is not rewritten, and the package is
not regenerated when nothing it is made from changed. Any failure raises before the previous
package is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from .generate import PACKAGE, GenerateError, generate, generated_from, generation_inputs
from .normalize import NormalizeError, normalize, unmatched_repairs, write_json
from .overlay import OverlayError
from .sources import Lock, SpecSourceError, fetch_all, fetch_pages, verify_present

# What the pipeline raises for bad pins, downloads, overlays or generator runs (never a traceback).
PIPELINE_ERRORS = (SpecSourceError, OverlayError, NormalizeError, GenerateError)


def lock_path(project: Path) -> Path:
    return project / "openapi" / "sources.lock.json"


def fetch(project: Path, mirror: str | None, out: TextIO, docs_mirror: str | None = None) -> None:
    """Download every pinned document (from ``mirror`` when set) and every page a hand-written
    document was written from (from ``docs_mirror``), and verify their sha256."""
    lock = Lock.load(lock_path(project))
    upstream = project / "openapi" / "upstream"
    for name, digest in fetch_all(lock, upstream, mirror=mirror).items():
        out.write(f"ok  {name}  sha256 {digest}\n")
    pages = fetch_pages(lock, upstream, docs_mirror=docs_mirror, spec_mirror=mirror)
    if pages:
        out.write(f"verified {len(pages)} documentation pages the hand-written documents follow\n")


def write_normalized(project: Path, out: TextIO) -> None:
    """Repair and merge the verified downloads into ``openapi/amperity.json``."""
    lock = Lock.load(lock_path(project))
    upstream = project / "openapi" / "upstream"
    verify_present(lock, upstream)
    document, reports = normalize(lock, upstream)
    changed = write_json(project / "openapi" / "amperity.json", document)
    for report in unmatched_repairs(reports):
        out.write(
            f"note: {report.overlay} action {report.index} matched nothing ({report.target}); "
            f"fixed upstream? review the overlay\n"
        )
    paths = sum(1 for item in document["paths"].values() for k in item if k != "parameters")
    schemas = len(document["components"].get("schemas", {}))
    state = "wrote" if changed else "unchanged"
    out.write(f"{state} openapi/amperity.json: {paths} operations, {schemas} schemas\n")


def build(project: Path, mirror: str | None, out: TextIO, docs_mirror: str | None = None) -> None:
    """Fetch what is missing, normalize, and generate ``amperity_async/`` unless it is up to date.

    Raises one of PIPELINE_ERRORS.
    """
    project = project.resolve()
    lock = Lock.load(lock_path(project))
    try:
        verify_present(lock, project / "openapi" / "upstream")
    except SpecSourceError:
        fetch(project, mirror, out, docs_mirror)
    write_normalized(project, out)
    package = project / PACKAGE
    inputs = generation_inputs(project, project / "openapi" / "amperity.json")
    if (package / "__init__.py").is_file() and generated_from(package) == inputs:
        out.write(f"{PACKAGE}/ is up to date\n")
        return
    digest = generate(project)
    out.write(f"generated {PACKAGE}/ (tree sha256 {digest})\n")
