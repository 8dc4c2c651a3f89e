"""The pinned upstream OpenAPI documents: the lock file, downloading and checksum verification."""

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
_SHA256_FIELD = re.compile(r'"sha256"\s*:\s*"([^"]*)"')


class SpecSourceError(Exception):
    """A pinned document could not be fetched or does not match its pin."""


class ChecksumMismatch(SpecSourceError):
    def __init__(self, file: str, expected: str, actual: str, origin: str) -> None:
        self.file, self.expected, self.actual, self.origin = file, expected, actual, origin
        super().__init__(
            f"checksum mismatch for {file} (from {origin}): pinned sha256 {expected}, "
            f"downloaded sha256 {actual}. Nothing was changed. If upstream published a new "
            f"revision on purpose, run 'make update-spec' to re-pin and regenerate."
        )


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

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, lock: Path) -> PinnedDocument:
        try:
            return cls(
                file=str(data["file"]),
                api=str(data["api"]),
                version=str(data["version"]),
                role=str(data.get("role", "stable")),
                url=str(data["url"]),
                sha256=str(data["sha256"]).lower(),
                changelog_heading=str(data.get("changelog_heading", "")),
                overlays=tuple(str(o) for o in data.get("overlays", ())),
            )
        except KeyError as exc:
            raise SpecSourceError(f"{lock}: a document entry lacks the field {exc.args[0]!r}") from exc


@attrs.frozen
class Lock:
    path: Path
    changelog: str
    documents: tuple[PinnedDocument, ...]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @classmethod
    def load(cls, path: Path) -> Lock:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecSourceError(f"{path}: cannot read the lock file: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
            raise SpecSourceError(f"{path}: expected an object with a 'documents' list")
        return cls(
            path=path,
            changelog=str(data.get("changelog", "")),
            documents=tuple(PinnedDocument.from_dict(d, lock=path) for d in data["documents"]),
        )

    def with_hashes(self, hashes: dict[str, str]) -> Lock:
        docs = tuple(attrs.evolve(d, sha256=hashes.get(d.file, d.sha256)) for d in self.documents)
        return attrs.evolve(self, documents=docs)

    def write(self) -> None:
        """Store the pinned hashes, changing only the sha256 values so the diff stays reviewable."""
        text = self.path.read_text(encoding="utf-8")
        data = json.loads(text)
        by_file = {d.file: d for d in self.documents}
        hashes = [by_file[entry["file"]].sha256 for entry in data["documents"]]
        pins = list(_SHA256_FIELD.finditer(text))
        if len(pins) == len(hashes):
            for pin, digest in zip(reversed(pins), reversed(hashes), strict=True):
                text = text[: pin.start(1)] + digest + text[pin.end(1) :]
        else:  # hand-edited beyond recognition: rewrite the whole file
            for entry, digest in zip(data["documents"], hashes, strict=True):
                entry["sha256"] = digest
            text = json.dumps(data, indent=2) + "\n"
        _atomic_write(self.path, text.encode())


def source_of(doc: PinnedDocument, mirror: str | None) -> str:
    """Where to fetch a document: ``$AMPERITY_SPEC_MIRROR/<file>`` when a mirror is set."""
    if not mirror:
        return doc.url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + doc.file
    return str(Path(mirror) / doc.file)


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


def verify_present(lock: Lock, dest: Path) -> None:
    for doc in lock.documents:
        path = dest / doc.file
        if not path.exists():
            raise SpecSourceError(f"{path} is missing: run 'make spec' first")
        digest = sha256(path.read_bytes())
        if digest != doc.sha256:
            raise ChecksumMismatch(doc.file, doc.sha256, digest, str(path))


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
