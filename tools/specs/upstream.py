"""Compare the pinned documents with what Amperity serves now, and accept what it serves.

``check-upstream`` reports, per API, whether each pinned document is still served unchanged,
whether each documentation page a hand-written document was written from (or the pinned section
of one, such as the changelog's) is unchanged, and whether the changelog page announces a version
newer than the pinned one. ``update`` downloads the served documents and pages without verifying
them, re-pins their sha256, re-normalizes and regenerates, and prints the same differences. The
comparisons are pure functions of documents and HTML, so they are tested offline.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs
import httpx

from .generate import PACKAGE, generate
from .normalize import HTTP_METHODS, normalize, unmatched_repairs, without_prose, write_json
from .sources import (
    PAGES_FOLDER,
    Lock,
    PinnedDocument,
    PinnedPage,
    SpecSourceError,
    copy_tree_atomically,
    fetch_all,
    fetch_pages,
    http_reader,
    page_source,
    sha256,
    source_of,
)

CHANGELOG_FILE = "changelog.html"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# "Amperity API: 2024-04-01", possibly followed by a permalink sign or a note.
_VERSION_HEADING = re.compile(r"^(?P<api>[^:]+?)\s*:\s*(?P<version>\d{4}-\d{2}-\d{2})\b")

Reader = Callable[[str], bytes]

# Exit statuses of check-upstream.
SAME, CHANGED, INCOMPLETE = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Differences between two documents


@attrs.frozen
class DocumentDiff:
    """What differs between two OpenAPI documents, named as a reviewer would look for it."""

    operations_added: tuple[str, ...] = ()
    operations_removed: tuple[str, ...] = ()
    operations_changed: tuple[str, ...] = ()
    schemas_added: tuple[str, ...] = ()
    schemas_removed: tuple[str, ...] = ()
    schemas_changed: tuple[str, ...] = ()
    other_changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(attrs.astuple(self))

    def lines(self) -> list[str]:
        lines = [f"added operation {name}" for name in self.operations_added]
        lines += [f"removed operation {name}" for name in self.operations_removed]
        lines += [f"changed operation {name}" for name in self.operations_changed]
        lines += [f"added schema {name}" for name in self.schemas_added]
        lines += [f"removed schema {name}" for name in self.schemas_removed]
        lines += [f"changed schema {name}" for name in self.schemas_changed]
        lines += [f"changed {name}" for name in self.other_changed]
        return lines


def _operations_by_key(document: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Operations keyed by operationId (method + path without one), with a readable label."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    paths = document.get("paths")
    for path, item in (paths if isinstance(paths, dict) else {}).items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            endpoint = f"{method.upper()} {path}"
            op_id = operation.get("operationId")
            key = str(op_id) if op_id else endpoint
            label = f"{op_id} ({endpoint})" if op_id else endpoint
            # Path-level parameters belong to every operation of the path.
            found[key] = (label, {**operation, "x-path-parameters": item.get("parameters", [])})
    return found


def _what_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if without_prose(old) == without_prose(new):
        return "descriptions only"
    keys = sorted(k for k in set(old) | set(new) if without_prose(old.get(k)) != without_prose(new.get(k)))
    return ", ".join("parameters" if k == "x-path-parameters" else k for k in keys)


def _compare(
    old: Mapping[str, tuple[str, Any]], new: Mapping[str, tuple[str, Any]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    added = tuple(new[k][0] for k in sorted(set(new) - set(old)))
    removed = tuple(old[k][0] for k in sorted(set(old) - set(new)))
    changed = []
    for key in sorted(set(old) & set(new)):
        (old_label, old_value), (new_label, new_value) = old[key], new[key]
        if old_value != new_value:
            label = new_label if old_label == new_label else f"{old_label} -> {new_label}"
            detail = (
                _what_changed(old_value, new_value)
                if isinstance(old_value, dict) and isinstance(new_value, dict)
                else "value"
            )
            changed.append(f"{label}: {detail}")
    return added, removed, tuple(changed)


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> DocumentDiff:
    """Added, removed and changed operations and schemas (and other sections) from ``old`` to ``new``."""
    ops_added, ops_removed, ops_changed = _compare(_operations_by_key(old), _operations_by_key(new))

    def schemas(document: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        found = (document.get("components") or {}).get("schemas") or {}
        return {name: (name, value) for name, value in found.items()}

    sch_added, sch_removed, sch_changed = _compare(schemas(old), schemas(new))

    other: list[str] = []
    old_info, new_info = old.get("info") or {}, new.get("info") or {}
    if old_info.get("version") != new_info.get("version"):
        other.append(f"info.version: {old_info.get('version')} -> {new_info.get('version')}")
    for key in sorted((set(old) | set(new)) - {"paths", "components", "info"}):
        if without_prose(old.get(key)) != without_prose(new.get(key)):
            other.append(key)
    old_components, new_components = old.get("components") or {}, new.get("components") or {}
    for section in sorted((set(old_components) | set(new_components)) - {"schemas"}):
        old_entries, new_entries = old_components.get(section) or {}, new_components.get(section) or {}
        for name in sorted(set(old_entries) | set(new_entries)):
            if name not in old_entries:
                other.append(f"components/{section}/{name} (added)")
            elif name not in new_entries:
                other.append(f"components/{section}/{name} (removed)")
            elif old_entries[name] != new_entries[name]:
                other.append(f"components/{section}/{name}")
    return DocumentDiff(
        operations_added=ops_added,
        operations_removed=ops_removed,
        operations_changed=ops_changed,
        schemas_added=sch_added,
        schemas_removed=sch_removed,
        schemas_changed=sch_changed,
        other_changed=tuple(other),
    )


# ---------------------------------------------------------------------------------------------
# The changelog page


class _HeadingText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self._depth = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            if self._depth == 0:
                self._parts = []
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag) and self._depth:
            self._depth -= 1
            if self._depth == 0:
                self.headings.append(" ".join("".join(self._parts).replace("\u00b6", " ").split()))

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._parts.append(data)


def changelog_versions(html: str) -> dict[str, tuple[str, ...]]:
    """Versions announced by the changelog page's headings, per API heading, oldest first.

    ``<h2>Amperity API: 2024-04-01</h2>`` gives ``{"Amperity API": ("2024-04-01",)}``.
    """
    parser = _HeadingText()
    parser.feed(html)
    parser.close()
    versions: dict[str, set[str]] = {}
    for heading in parser.headings:
        match = _VERSION_HEADING.match(heading)
        if match:
            versions.setdefault(match["api"], set()).add(match["version"])
    return {api: tuple(sorted(found)) for api, found in versions.items()}


def changelog_location(lock: Lock, mirror: str | None) -> str | None:
    """Where the changelog page is read from: ``<mirror>/changelog.html`` when a mirror is set."""
    if mirror:
        if "://" in mirror:
            return mirror.rstrip("/") + "/" + CHANGELOG_FILE
        return str(Path(mirror) / CHANGELOG_FILE)
    return lock.changelog or None


# ---------------------------------------------------------------------------------------------
# Checking the pins


@attrs.frozen
class DocumentCheck:
    document: PinnedDocument
    state: Literal["same", "changed", "unavailable"]
    served_sha256: str | None = None
    diff: DocumentDiff | None = None
    note: str = ""


@attrs.frozen
class PageCheck:
    page: PinnedPage
    state: Literal["same", "changed", "unavailable"]
    served_sha256: str | None = None
    changes: tuple[str, ...] = ()
    """A unified diff of the pinned text against the served one (when a pinned copy is at hand)."""
    note: str = ""


_MAX_DIFF_LINES = 40


def page_changes(pinned: bytes, served: bytes) -> tuple[str, ...]:
    """What a reviewer reads first: a unified diff of two page texts, cut after a screenful."""
    lines = list(
        difflib.unified_diff(
            pinned.decode("utf-8", "replace").splitlines(),
            served.decode("utf-8", "replace").splitlines(),
            "pinned",
            "served",
            n=1,
            lineterm="",
        )
    )
    if len(lines) > _MAX_DIFF_LINES:
        lines = [*lines[:_MAX_DIFF_LINES], f"... ({len(lines) - _MAX_DIFF_LINES} more diff lines)"]
    return tuple(lines)


def check_page(page: PinnedPage, served: bytes, pinned_copy: bytes | None) -> PageCheck:
    """Compare a served page (the pinned section of it) with its pin; ``pinned_copy`` gives the diff."""
    text = page.pinned_text(served)
    digest = sha256(text)
    if digest == page.sha256:
        return PageCheck(page, "same", served_sha256=digest)
    if page.section is not None and not text:
        return PageCheck(page, "changed", digest, note=f"the page has no section {page.section!r} any more")
    if pinned_copy is None or sha256(page.pinned_text(pinned_copy)) != page.sha256:
        return PageCheck(
            page, "changed", digest, note="no pinned copy in openapi/upstream/pages to diff (run 'make spec')"
        )
    return PageCheck(page, "changed", digest, changes=page_changes(page.pinned_text(pinned_copy), text))


@attrs.frozen
class ApiCheck:
    api: str
    heading: str
    pinned: tuple[str, ...]
    # None when the changelog was not checked for this API.
    announced: tuple[str, ...] | None
    new_versions: tuple[str, ...] = ()
    note: str = ""


@attrs.frozen
class UpstreamReport:
    documents: tuple[DocumentCheck, ...]
    apis: tuple[ApiCheck, ...]
    # Why the changelog page could not be read at all ("" when it was read).
    changelog_unavailable: str = ""
    written: tuple[PinnedDocument, ...] = ()
    pages: tuple[PageCheck, ...] = ()

    @property
    def changed(self) -> bool:
        return (
            any(d.state == "changed" for d in self.documents)
            or any(p.state == "changed" for p in self.pages)
            or any(a.new_versions for a in self.apis)
        )

    @property
    def exit_status(self) -> int:
        if self.changed:
            return CHANGED
        if any(d.state == "unavailable" for d in self.documents) or any(
            p.state == "unavailable" for p in self.pages
        ):
            return INCOMPLETE
        return SAME

    def _written_lines(self, api: str) -> list[str]:
        lines: list[str] = []
        for doc in (d for d in self.written if d.api == api):
            checks = [p for p in self.pages if p.page.document == doc.file]
            same = sum(1 for p in checks if p.state == "same")
            state = (
                "same"
                if same == len(checks)
                else "changed"
                if any(p.state == "changed" for p in checks)
                else "unavailable"
            )
            lines.append(
                f"  {doc.version} {doc.file} (hand-written from {len(checks)} documentation pages): {state}"
            )
            for check in checks:
                if check.state == "same":
                    continue
                what = (
                    f"{check.page.file} (section {check.page.section!r})"
                    if check.page.section
                    else check.page.file
                )
                lines.append(f"      page {what}: {check.state}")
                if check.state == "changed":
                    lines.append(f"          sha256 pinned {check.page.sha256}, served {check.served_sha256}")
                lines += [f"          {line}" for line in check.changes]
                if check.note:
                    lines.append(f"          {check.note}")
            if state == "changed":
                lines.append(
                    f"      review openapi/{doc.file} against the revised pages, then run 'make update-spec'"
                )
        return lines

    def render(self) -> str:
        lines: list[str] = []
        for api in self.apis:
            lines.append(f"{api.api} ({api.heading}):")
            lines += self._written_lines(api.api)
            for check in (d for d in self.documents if d.document.api == api.api):
                doc = check.document
                lines.append(f"  {doc.version} {doc.file}: {check.state}")
                if check.state == "changed":
                    lines.append(f"      sha256 pinned {doc.sha256}, served {check.served_sha256}")
                if check.diff is not None:
                    lines += [f"      {line}" for line in check.diff.lines()] or [
                        "      no difference in operations, schemas or components (formatting only)"
                    ]
                if check.note:
                    lines.append(f"      {check.note}")
            pinned = ", ".join(api.pinned) or "no dated version"
            if api.announced is None:
                lines.append(
                    f"  changelog not checked: {api.note}" if api.note else "  changelog not checked"
                )
            elif api.new_versions:
                lines.append(
                    f"  new version announced: {', '.join(api.new_versions)} (pinned {pinned}); edit the "
                    f"lock entry's version, file and url, then run 'make update-spec'"
                )
            elif not api.pinned:
                lines.append("  changelog: no dated version announced (none pinned)")
            else:
                lines.append(f"  changelog: no version newer than the pinned {pinned}")
                if api.note:
                    lines.append(f"      {api.note}")
        if self.changelog_unavailable:
            lines.append(f"changelog not checked: {self.changelog_unavailable}")
        if self.changed:
            lines.append("result: upstream differs from the pins; review, then run 'make update-spec'")
        elif self.exit_status == INCOMPLETE:
            lines.append("result: not every document could be checked")
        else:
            lines.append("result: the pinned documents are what upstream serves")
        return "\n".join(lines) + "\n"


def check_document(doc: PinnedDocument, served: bytes, pinned_copy: bytes | None) -> DocumentCheck:
    """Compare what is served now with the pin; ``pinned_copy`` (when known) gives the differences."""
    digest = sha256(served)
    if digest == doc.sha256:
        return DocumentCheck(doc, "same", served_sha256=digest)
    try:
        new = json.loads(served)
    except ValueError as exc:
        return DocumentCheck(
            doc, "changed", served_sha256=digest, note=f"the served document is not JSON: {exc}"
        )
    if pinned_copy is None or sha256(pinned_copy) != doc.sha256:
        return DocumentCheck(
            doc,
            "changed",
            served_sha256=digest,
            note="no pinned copy in openapi/upstream to list the differences (run 'make spec' first)",
        )
    diff = diff_documents(json.loads(pinned_copy), new)
    served_version = str((new.get("info") or {}).get("version", ""))
    note = ""
    if served_version and served_version != doc.version:
        note = f"the served document says version {served_version}; the lock pins {doc.version}"
    return DocumentCheck(doc, "changed", served_sha256=digest, diff=diff, note=note)


def check_changelog(documents: Iterable[PinnedDocument], html: str | None) -> tuple[ApiCheck, ...]:
    """Per API: versions announced by the changelog that are newer than every pinned dated version."""
    by_api: dict[str, list[PinnedDocument]] = {}
    for doc in documents:
        by_api.setdefault(doc.api, []).append(doc)
    announced_by_heading = changelog_versions(html) if html is not None else {}
    checks = []
    for api, docs in by_api.items():
        heading = next((d.changelog_heading for d in docs if d.changelog_heading), api)
        pinned = tuple(sorted(d.version for d in docs if _DATE.match(d.version)))
        if html is None:
            checks.append(ApiCheck(api, heading, pinned, None))
            continue
        announced = announced_by_heading.get(heading)
        if not announced and not pinned:
            # An API pinned at no dated version (unstable only) has no dated heading yet.
            checks.append(ApiCheck(api, heading, pinned, ()))
            continue
        if not announced:
            checks.append(
                ApiCheck(
                    api,
                    heading,
                    pinned,
                    None,
                    note=f"the changelog has no '{heading}: <YYYY-MM-DD>' heading (page layout changed?)",
                )
            )
            continue
        latest = pinned[-1] if pinned else ""
        newer = tuple(v for v in announced if v > latest)
        note = (
            "" if not pinned or latest in announced else f"the pinned {latest} is not listed in the changelog"
        )
        checks.append(ApiCheck(api, heading, pinned, announced, newer, note))
    return tuple(checks)


def check_upstream(
    lock: Lock, *, mirror: str | None, upstream_dir: Path, reader: Reader, docs_mirror: str | None = None
) -> UpstreamReport:
    pages = []
    for page in lock.pages:
        try:
            served = reader(page_source(page, docs_mirror, mirror))
        except SpecSourceError as exc:
            pages.append(PageCheck(page, "unavailable", note=str(exc)))
            continue
        pinned_path = upstream_dir / PAGES_FOLDER / page.file
        pages.append(check_page(page, served, pinned_path.read_bytes() if pinned_path.is_file() else None))
    documents = []
    for doc in lock.documents:
        try:
            served = reader(source_of(doc, mirror))
        except SpecSourceError as exc:
            documents.append(DocumentCheck(doc, "unavailable", note=str(exc)))
            continue
        pinned_path = upstream_dir / doc.file
        pinned_copy = pinned_path.read_bytes() if pinned_path.is_file() else None
        documents.append(check_document(doc, served, pinned_copy))

    location = changelog_location(lock, mirror)
    html: str | None = None
    unavailable = ""
    if location is None:
        unavailable = "the lock file names no changelog page"
    else:
        try:
            html = reader(location).decode("utf-8", errors="replace")
        except SpecSourceError as exc:
            where = (
                "the mirror has no changelog.html" if mirror else "the changelog page could not be fetched"
            )
            unavailable = f"{where} ({exc})"
    return UpstreamReport(
        tuple(documents), check_changelog(lock.all_documents, html), unavailable, lock.written, tuple(pages)
    )


def run_check(
    lock: Lock,
    mirror: str | None,
    out: TextIO,
    *,
    upstream_dir: Path | None = None,
    client: httpx.Client | None = None,
    docs_mirror: str | None = None,
) -> int:
    """Print the comparison of the pins with upstream (or ``mirror`` and ``docs_mirror``); return
    the exit status.

    0: nothing changed; 1: a document or page changed or a newer version is announced; 2: nothing
    found changed, but a document or page could not be fetched.
    """
    with _reader(client) as reader:
        report = check_upstream(
            lock,
            mirror=mirror,
            upstream_dir=upstream_dir or lock.directory / "upstream",
            reader=reader,
            docs_mirror=docs_mirror,
        )
    out.write(report.render())
    return report.exit_status


# ---------------------------------------------------------------------------------------------
# Accepting what upstream serves


def run_update(
    project: Path,
    mirror: str | None,
    out: TextIO,
    *,
    client: httpx.Client | None = None,
    docs_mirror: str | None = None,
) -> int:
    """Fetch what upstream serves now, re-pin, re-normalize and regenerate; print what changed.

    Everything is built in a scratch folder first; the project (downloads, lock, normalized spec,
    generated package) is only written once every step succeeded, so a failure changes nothing.
    Raises SpecSourceError, OverlayError, NormalizeError or GenerateError on failure.
    """
    project = project.resolve()
    lock = Lock.load(project / "openapi" / "sources.lock.json")
    upstream_dir = project / "openapi" / "upstream"
    spec_path = project / "openapi" / "amperity.json"
    with tempfile.TemporaryDirectory(prefix=".update-spec-", dir=project) as scratch_name:
        scratch = Path(scratch_name)
        with _reader(client) as reader:
            served = fetch_all(lock, scratch / "upstream", mirror=mirror, verify=False, reader=reader)
            served |= fetch_pages(
                lock,
                scratch / "upstream",
                docs_mirror=docs_mirror,
                spec_mirror=mirror,
                verify=False,
                reader=reader,
            )
        pinned_pages = upstream_dir / PAGES_FOLDER
        if (
            all(served[d.file] == d.sha256 for d in lock.documents)
            and all(
                (upstream_dir / d.file).is_file() and sha256((upstream_dir / d.file).read_bytes()) == d.sha256
                for d in lock.documents
            )
            and all(served[p.key] == p.sha256 for p in lock.pages)
            and all(
                (pinned_pages / p.file).is_file()
                and sha256(p.pinned_text((pinned_pages / p.file).read_bytes())) == p.sha256
                for p in lock.pages
            )
        ):
            out.write("upstream serves the pinned documents; nothing to update\n")
            return 0
        new_lock = lock.with_hashes(served)
        document, reports = normalize(new_lock, scratch / "upstream")
        write_json(scratch / "amperity.json", document)
        tree = generate(project, spec=scratch / "amperity.json", out=scratch / PACKAGE)

        for doc in new_lock.documents:
            old_pin = next(d.sha256 for d in lock.documents if d.file == doc.file)
            new_body = (scratch / "upstream" / doc.file).read_bytes()
            if old_pin == doc.sha256:
                out.write(f"{doc.api} {doc.version} {doc.file}: same\n")
                continue
            out.write(f"{doc.api} {doc.version} {doc.file}: changed\n")
            out.write(f"    sha256 {old_pin} -> {doc.sha256}\n")
            previous = upstream_dir / doc.file
            new = json.loads(new_body)
            if previous.is_file():
                lines = diff_documents(json.loads(previous.read_bytes()), new).lines()
                out.writelines(f"    {line}\n" for line in lines or ["formatting only"])
            else:
                out.write("    (no previous copy in openapi/upstream to compare with)\n")
            served_version = str((new.get("info") or {}).get("version", ""))
            if served_version and served_version != doc.version:
                out.write(
                    f"    note: the document says version {served_version}; the lock pins {doc.version}\n"
                )
        for page in lock.pages:
            new_pin = served[page.key]
            if new_pin == page.sha256:
                continue
            out.write(f"{page.document} page {page.key}: changed\n")
            out.write(f"    sha256 {page.sha256} -> {new_pin}\n")
            previous = pinned_pages / page.file
            if previous.is_file():
                new_text = page.pinned_text((scratch / "upstream" / PAGES_FOLDER / page.file).read_bytes())
                changes = page_changes(page.pinned_text(previous.read_bytes()), new_text)
                out.writelines(f"    {line}\n" for line in changes)
            out.write(f"    note: openapi/{page.document} was written from this page; review it\n")
        if spec_path.is_file():
            lines = diff_documents(json.loads(spec_path.read_bytes()), document).lines()
            out.write("openapi/amperity.json (what the generated client exposes):\n")
            out.writelines(f"    {line}\n" for line in lines or ["no change"])
        out.writelines(
            f"note: {report.overlay} action {report.index} matched nothing ({report.target}); "
            f"fixed upstream? review the overlay\n"
            for report in unmatched_repairs(reports)
        )

        # Commit: downloads, then the lock, then what is built from them (the Makefile's order).
        upstream_dir.mkdir(parents=True, exist_ok=True)
        for doc in new_lock.documents:
            (scratch / "upstream" / doc.file).replace(upstream_dir / doc.file)
        if new_lock.pages:
            pinned_pages.mkdir(parents=True, exist_ok=True)
        for page in new_lock.pages:
            (scratch / "upstream" / PAGES_FOLDER / page.file).replace(pinned_pages / page.file)
        new_lock.write()
        (upstream_dir / ".fetched").touch()
        (scratch / "amperity.json").replace(spec_path)
        copy_tree_atomically(scratch / PACKAGE, project / PACKAGE)
    out.write(f"re-pinned openapi/sources.lock.json; regenerated {PACKAGE}/ (tree sha256 {tree})\n")
    return 0


@contextlib.contextmanager
def _reader(client: httpx.Client | None) -> Iterator[Reader]:
    """A reader for the duration of a command: through ``client`` when given, else an own client."""
    if client is not None:
        yield http_reader(client)
        return
    with httpx.Client(timeout=30.0, follow_redirects=True) as own:
        yield http_reader(own)


__all__ = [
    "ApiCheck",
    "DocumentCheck",
    "DocumentDiff",
    "PageCheck",
    "UpstreamReport",
    "changelog_location",
    "changelog_versions",
    "check_changelog",
    "check_document",
    "check_page",
    "check_upstream",
    "diff_documents",
    "run_check",
    "run_update",
]
