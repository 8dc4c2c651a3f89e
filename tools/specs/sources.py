"""The pinned sources: the lock file, downloading and checksum verification.

Two kinds of documents are listed. Amperity's published OpenAPI documents are downloaded (from
``$AMPERITY_SPEC_MIRROR`` when set) and checked against their sha256. Documents the project wrote
itself, for an API Amperity publishes no document for, live in ``openapi/`` and are read in place;
what pins them is the documentation pages they were written from, each with its upstream URL and
sha256 (only a named section of a page, such as the changelog's, when the lock says so). The pages
are downloaded (from ``$AMPERITY_DOCS_MIRROR`` when set, else from the spec mirror's ``pages/``
folder when a spec mirror is set) into ``openapi/upstream/pages/`` and verified the same way, so a
revised page stops the build until someone has compared it with the document and re-pinned it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx

MIRROR_ENV = "AMPERITY_SPEC_MIRROR"
DOCS_MIRROR_ENV = "AMPERITY_DOCS_MIRROR"
PAGES_FOLDER = "pages"
_SHA256_FIELD = re.compile(r'"sha256"\s*:\s*"([^"]*)"')


class SpecSourceError(Exception):
    """A pinned document could not be fetched or does not match its pin."""


class ChecksumMismatch(SpecSourceError):
    _ADVICE = (
        "If upstream published a new revision on purpose, run 'make update-spec' to re-pin and regenerate."
    )

    def __init__(
        self, file: str, expected: str, actual: str, origin: str, *, advice: str | None = None
    ) -> None:
        self.file, self.expected, self.actual, self.origin = file, expected, actual, origin
        super().__init__(
            f"checksum mismatch for {file} (from {origin}): pinned sha256 {expected}, "
            f"downloaded sha256 {actual}. Nothing was changed. {advice or self._ADVICE}"
        )


def page_mismatch(page: PinnedPage, actual: str, origin: str) -> ChecksumMismatch:
    """A revised documentation page: the hand-written document may need a look before re-pinning."""
    what = f"{page.file} (its {page.section!r} section)" if page.section else page.file
    return ChecksumMismatch(
        what,
        page.sha256,
        actual,
        origin,
        advice=(
            f"openapi/{page.document} was written from this page: compare them ('make check-upstream' "
            f"lists the revised pages), revise the document if needed, then run 'make update-spec' to "
            f"re-pin the page."
        ),
    )


@attrs.frozen
class PinnedPage:
    """A documentation page a hand-written document was written from."""

    file: str
    url: str
    sha256: str
    document: str
    """The hand-written document's file name."""
    section: str | None = None
    """Only the section under the heading starting with this text is pinned (the changelog's)."""

    @classmethod
    def from_dict(cls, data: Any, *, document: str, lock: Path) -> PinnedPage:
        if not isinstance(data, dict):
            raise SpecSourceError(f"{lock}: a page of {document} is not an object: {data!r}")
        try:
            section = data.get("section")
            return cls(
                file=str(data["file"]),
                url=str(data["url"]),
                sha256=str(data["sha256"]).lower(),
                document=document,
                section=None if section is None else str(section),
            )
        except KeyError as exc:
            raise SpecSourceError(f"{lock}: a page of {document} lacks the field {exc.args[0]!r}") from exc

    @property
    def key(self) -> str:
        """What identifies the pin: the file, and the section when only a section is pinned."""
        return f"{self.file}#{self.section}" if self.section else self.file

    def pinned_text(self, body: bytes) -> bytes:
        """The bytes the pin covers: the whole page, or its section."""
        return body if self.section is None else rst_section(body, self.section)


@attrs.frozen
class PinnedDocument:
    file: str
    api: str
    version: str
    role: str
    url: str
    sha256: str
    changelog_heading: str
    overlays: tuple[str, ...]
    local: str | None = None
    """A hand-written document's path relative to the lock's folder (read in place, never fetched)."""
    pages: tuple[PinnedPage, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, lock: Path) -> PinnedDocument:
        try:
            local = data.get("local")
            file = str(data["file"])
            return cls(
                file=file,
                api=str(data["api"]),
                version=str(data["version"]),
                role=str(data.get("role", "stable")),
                # A hand-written document is pinned by its pages, not by a URL and a checksum.
                url=str(data["url"]) if local is None else "",
                sha256=str(data["sha256"]).lower() if local is None else "",
                changelog_heading=str(data.get("changelog_heading", "")),
                overlays=tuple(str(o) for o in data.get("overlays", ())),
                local=None if local is None else str(local),
                pages=tuple(
                    PinnedPage.from_dict(page, document=file, lock=lock) for page in data.get("pages", ())
                ),
            )
        except KeyError as exc:
            raise SpecSourceError(f"{lock}: a document entry lacks the field {exc.args[0]!r}") from exc


@attrs.frozen
class Lock:
    path: Path
    changelog: str
    documents: tuple[PinnedDocument, ...]
    """The downloaded documents."""
    written: tuple[PinnedDocument, ...] = ()
    """The hand-written documents, read in place and pinned by their pages."""

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def all_documents(self) -> tuple[PinnedDocument, ...]:
        """Every document, downloaded ones first (the order they are merged in)."""
        return self.documents + self.written

    @property
    def pages(self) -> tuple[PinnedPage, ...]:
        return tuple(page for doc in self.written for page in doc.pages)

    def document_path(self, doc: PinnedDocument, upstream_dir: Path) -> Path:
        """Where a document is read from: its download, or the hand-written file itself."""
        return self.directory / doc.local if doc.local is not None else upstream_dir / doc.file

    @classmethod
    def load(cls, path: Path) -> Lock:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecSourceError(f"{path}: cannot read the lock file: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
            raise SpecSourceError(f"{path}: expected an object with a 'documents' list")
        every = [PinnedDocument.from_dict(d, lock=path) for d in data["documents"]]
        return cls(
            path=path,
            changelog=str(data.get("changelog", "")),
            documents=tuple(d for d in every if d.local is None),
            written=tuple(d for d in every if d.local is not None),
        )

    def with_hashes(self, hashes: dict[str, str]) -> Lock:
        """The lock with new pins: ``hashes`` by document file, and by page key for pages."""
        docs = tuple(attrs.evolve(d, sha256=hashes.get(d.file, d.sha256)) for d in self.documents)
        written = tuple(
            attrs.evolve(d, pages=tuple(attrs.evolve(p, sha256=hashes.get(p.key, p.sha256)) for p in d.pages))
            for d in self.written
        )
        return attrs.evolve(self, documents=docs, written=written)

    def write(self) -> None:
        """Store the pinned hashes, changing only the sha256 values so the diff stays reviewable."""
        text = self.path.read_text(encoding="utf-8")
        data = json.loads(text)
        by_file = {d.file: d for d in self.all_documents}
        # Every sha256 of the file, in the order the text holds them (JSON objects keep key order).
        slots: list[tuple[dict[str, Any], str]] = []
        for entry in data["documents"]:
            doc = by_file[entry["file"]]
            pages = {page.key: page for page in doc.pages}
            for key in entry:
                if key == "sha256":
                    slots.append((entry, doc.sha256))
                elif key == "pages":
                    for page in entry["pages"]:
                        pinned = pages[PinnedPage.from_dict(page, document=doc.file, lock=self.path).key]
                        slots.append((page, pinned.sha256))
        pins = list(_SHA256_FIELD.finditer(text))
        if len(pins) == len(slots):
            for pin, (_, digest) in zip(reversed(pins), reversed(slots), strict=True):
                text = text[: pin.start(1)] + digest + text[pin.end(1) :]
        else:  # hand-edited beyond recognition: rewrite the whole file
            for node, digest in slots:
                node["sha256"] = digest
            text = json.dumps(data, indent=2) + "\n"
        _atomic_write(self.path, text.encode())


def source_of(doc: PinnedDocument, mirror: str | None) -> str:
    """Where to fetch a document: ``$AMPERITY_SPEC_MIRROR/<file>`` when a mirror is set."""
    if not mirror:
        return doc.url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + doc.file
    return str(Path(mirror) / doc.file)


def page_source(page: PinnedPage, docs_mirror: str | None, spec_mirror: str | None = None) -> str:
    """Where to fetch a page: ``$AMPERITY_DOCS_MIRROR/<file>``, else ``<spec mirror>/pages/<file>``
    when a spec mirror is set (a copy of ``openapi/upstream`` mirrors both), else its URL."""
    base = docs_mirror or (_join(spec_mirror, PAGES_FOLDER) if spec_mirror else None)
    return page.url if not base else _join(base, page.file)


def _join(base: str, name: str) -> str:
    if "://" in base:
        return base.rstrip("/") + "/" + name
    return str(Path(base) / name)


_RST_UNDERLINE = re.compile(rb"^([=\-~^\"'`#*+_:.])\1{2,}\s*$")


def rst_section(body: bytes, heading: str) -> bytes:
    """The text of the reStructuredText section whose title starts with ``heading``, up to the next
    title of the same level (an empty string when the page has no such section)."""
    lines = body.splitlines(keepends=True)
    start, level = None, None
    for index in range(1, len(lines)):
        underline = _RST_UNDERLINE.match(lines[index])
        title = lines[index - 1].strip()
        if underline is None or not title or _RST_UNDERLINE.match(lines[index - 1]):
            continue
        if start is None:
            if title.decode("utf-8", "replace").startswith(heading):
                start, level = index - 1, underline.group(1)
        elif underline.group(1) == level:
            return b"".join(lines[start : index - 1])
    return b"" if start is None else b"".join(lines[start:])


def read_source(location: str, *, client: httpx.Client | None = None, timeout: float = 30.0) -> bytes:
    """The bytes at ``location``: an http(s) URL, a ``file://`` URL or a local path."""
    if location.startswith("file://"):
        location = urllib.parse.unquote(urllib.parse.urlsplit(location).path)
    if "://" not in location:
        try:
            return Path(location).read_bytes()
        except OSError as exc:
            raise SpecSourceError(f"cannot read {location}: {exc.strerror or exc}") from exc
    try:
        if client is None:
            with httpx.Client(timeout=timeout, follow_redirects=True) as own:
                response = own.get(location)
        else:
            response = client.get(location)
    except httpx.HTTPError as exc:
        raise SpecSourceError(f"cannot fetch {location}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise SpecSourceError(f"cannot fetch {location}: HTTP {response.status_code}")
    return response.content


def http_reader(client: httpx.Client) -> Callable[[str], bytes]:
    """A ``reader`` for :func:`fetch_all` that downloads through ``client`` (tests mount mocks on it)."""
    return lambda location: read_source(location, client=client)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_all(
    lock: Lock,
    dest: Path,
    *,
    mirror: str | None = None,
    verify: bool = True,
    reader: Callable[[str], bytes] = read_source,
) -> dict[str, str]:
    """Fetch every pinned document into ``dest``; return the sha256 of each.

    All documents are fetched and checked before any file in ``dest`` is replaced, so a mismatch
    leaves the previous download (and everything built from it) untouched.
    """
    fetched: dict[str, bytes] = {}
    for doc in lock.written:
        path = lock.document_path(doc, dest)
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SpecSourceError(
                f"{path} (hand-written, for the {doc.api} API) is not readable JSON: {exc}"
            ) from exc
    for doc in lock.documents:
        origin = source_of(doc, mirror)
        body = reader(origin)
        digest = sha256(body)
        if verify and digest != doc.sha256:
            raise ChecksumMismatch(doc.file, doc.sha256, digest, origin)
        try:
            json.loads(body)
        except ValueError as exc:
            raise SpecSourceError(f"{doc.file} (from {origin}) is not JSON: {exc}") from exc
        fetched[doc.file] = body
    dest.mkdir(parents=True, exist_ok=True)
    for name, body in fetched.items():
        _atomic_write(dest / name, body)
    return {name: sha256(body) for name, body in fetched.items()}


def fetch_pages(
    lock: Lock,
    dest: Path,
    *,
    docs_mirror: str | None = None,
    spec_mirror: str | None = None,
    verify: bool = True,
    reader: Callable[[str], bytes] = read_source,
) -> dict[str, str]:
    """Fetch every pinned page into ``dest/pages``; return the sha256 of what each pin covers, by
    page key. As with documents, nothing is replaced unless every page was fetched (and verified)."""
    fetched: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    for page in lock.pages:
        origin = page_source(page, docs_mirror, spec_mirror)
        try:
            body = reader(origin)
        except SpecSourceError as exc:
            hint = "" if docs_mirror else f"; set {DOCS_MIRROR_ENV} to a folder or URL base holding the pages"
            raise SpecSourceError(f"{exc} (a page {page.document} was written from{hint})") from exc
        digest = sha256(page.pinned_text(body))
        if verify and digest != page.sha256:
            raise page_mismatch(page, digest, origin)
        fetched[page.file] = body
        digests[page.key] = digest
    for name, body in fetched.items():
        _atomic_write(dest / PAGES_FOLDER / name, body)
    return digests


def verify_present(lock: Lock, dest: Path) -> None:
    for doc in lock.documents:
        path = dest / doc.file
        if not path.exists():
            raise SpecSourceError(f"{path} is missing: run 'make spec' first")
        digest = sha256(path.read_bytes())
        if digest != doc.sha256:
            raise ChecksumMismatch(doc.file, doc.sha256, digest, str(path))
    for page in lock.pages:
        path = dest / PAGES_FOLDER / page.file
        if not path.exists():
            raise SpecSourceError(f"{path} is missing: run 'make spec' first")
        digest = sha256(page.pinned_text(path.read_bytes()))
        if digest != page.sha256:
            raise page_mismatch(page, digest, str(path))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_tree_atomically(src: Path, dest: Path) -> None:
    """Replace ``dest`` with ``src`` so that readers see the old tree or the new one, never a mix."""
    staging = dest.with_name(f".{dest.name}.new")
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(src, staging, symlinks=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)


def names(documents: Sequence[PinnedDocument]) -> list[str]:
    return [d.file for d in documents]
