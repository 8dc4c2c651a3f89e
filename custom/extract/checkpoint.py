"""The checkpoint record beside an output: what it describes, and strict reading of it.

A checkpoint binds an output file to

- its **source**: tenant, base URL, api-version, operation, arguments, parameters, limits;
- its **run**: the id of the run that started the output (``extract-all`` and shards check it);
- the **file**: device and inode, and for each position the verified length and the sha256 of
  every byte up to it.

``committed`` is what the file durably holds (synced to disk); ``pending`` is what has been written
since, up to the end of the page being written, if any. The checkpoint naming the pending page is
written before the page, so a process that dies in between leaves the file at ``committed`` (or
part-way to ``pending``), and one that got through leaves it at ``pending``; a machine that stops
may lose what was not synced, and leaves the file at ``committed`` or beyond. A file at neither,
or shorter than ``committed``, was changed by someone else. The summary fields at the top
(``rows``, ``pages``, ``done``) describe ``committed`` only: a checkpoint never claims rows that
are not yet durably in the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import CheckpointError
from .output import FileIdentity, write_atomically

FORMAT = 2
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


@attrs.frozen
class Source:
    """Everything that decides which rows an output gets; a resume must match it exactly."""

    tenant: str
    base_url: str
    api_version: str
    operation: str
    args: tuple[str, ...]
    params: Mapping[str, Any]
    """Canonical JSON values (timestamps as UTC strings), so equal parameters compare equal."""
    max_items: int | None = None
    shards: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "base_url": self.base_url,
            "api_version": self.api_version,
            "operation": self.operation,
            "args": list(self.args),
            "params": dict(self.params),
            "max_items": self.max_items,
            "shards": self.shards,
        }

    def difference(self, other: Source) -> str | None:
        """How ``other`` (the checkpoint's) differs from this one, in words; None when they match."""
        if self.tenant != other.tenant or self.base_url != other.base_url:
            return (
                f"tenant {other.tenant!r} at {other.base_url}, not tenant {self.tenant!r} at {self.base_url}"
            )
        if self.operation != other.operation:
            return f"operation {other.operation}, not {self.operation}"
        if self.api_version != other.api_version:
            return f"api-version {other.api_version}, not {self.api_version}"
        mine, theirs = self.to_json(), other.to_json()
        for key in ("args", "params", "max_items", "shards"):
            if _canonical(mine[key]) != _canonical(theirs[key]):
                return f"{key} {_canonical(theirs[key])}, not {_canonical(mine[key])}"
        return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@attrs.frozen
class Cursor:
    """Where the source is: the window to work on (``step``), the cursor within it, and the item
    keys that guard the window boundaries against doubles."""

    step: int = 0
    next_token: str | None = None
    done: bool = False
    previous_keys: tuple[str, ...] = ()
    current_keys: tuple[str, ...] = ()


@attrs.frozen
class Position:
    """A cursor and the output as it is once everything before the cursor is written."""

    cursor: Cursor
    length: int
    sha256: str
    rows: int
    pages: int

    @classmethod
    def empty(cls) -> Position:
        return cls(Cursor(), 0, EMPTY_SHA256, 0, 0)

    def to_json(self) -> dict[str, Any]:
        c = self.cursor
        return {
            "length": self.length,
            "sha256": self.sha256,
            "rows": self.rows,
            "pages": self.pages,
            "step": c.step,
            "next_token": c.next_token,
            "done": c.done,
            "previous_keys": list(c.previous_keys),
            "current_keys": list(c.current_keys),
        }


@attrs.frozen
class Checkpoint:
    run: str
    source: Source
    output: FileIdentity
    committed: Position
    pending: Position | None = None

    def to_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "run": self.run,
            "rows": self.committed.rows,
            "pages": self.committed.pages,
            "done": self.committed.cursor.done,
            "source": self.source.to_json(),
            "output": {"device": self.output.device, "inode": self.output.inode},
            "committed": self.committed.to_json(),
            "pending": None if self.pending is None else self.pending.to_json(),
        }
        return json.dumps(document, indent=1).encode("utf-8") + b"\n"

    def write(self, path: Path, *, durable: bool = True) -> None:
        write_atomically(path, self.to_bytes(), durable=durable)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path``, None if there is none; CheckpointError if it cannot be trusted."""
        reader = RecordReader(path)
        data = reader.load()
        if data is None:
            return None
        return cls(
            run=reader.text(data, "run"),
            source=reader.source(reader.mapping(data.get("source"), "source")),
            output=reader.identity(reader.mapping(data.get("output"), "output")),
            committed=reader.position(reader.mapping(data.get("committed"), "committed"), "committed"),
            pending=None
            if data.get("pending") is None
            else reader.position(reader.mapping(data.get("pending"), "pending"), "pending"),
        ).checked(reader)

    @property
    def latest(self) -> Position:
        return self.pending or self.committed

    # What the file durably holds, at a glance (the summary fields of the JSON document).

    @property
    def rows(self) -> int:
        return self.committed.rows

    @property
    def pages(self) -> int:
        return self.committed.pages

    @property
    def done(self) -> bool:
        return self.committed.cursor.done

    @property
    def next_token(self) -> str | None:
        """The cursor to go on from (within the window ``committed.cursor.step``)."""
        return self.committed.cursor.next_token

    def checked(self, reader: RecordReader) -> Checkpoint:
        committed, latest = self.committed, self.latest
        if latest.length < committed.length or latest.rows < committed.rows or latest.pages < committed.pages:
            raise reader.damaged("its pending position lies before its committed position")
        for name, position in (("committed", committed), ("pending", latest)):
            c = position.cursor
            if c.step == 0 and c.next_token is None and not c.done and (position.rows or position.length):
                # The start of the list, yet rows already written: following it would write them twice.
                raise reader.damaged(f"its {name} position has no cursor but {position.rows} rows")
        return self


class RecordReader:
    """Typed access to a parsed checkpoint or manifest; every problem names the file and the field."""

    def __init__(self, path: Path, what: str = "checkpoint") -> None:
        self.path = path
        self.what = what

    def damaged(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self.what} {self.path} is damaged: {why}; start over with --overwrite")

    def load(self) -> Mapping[str, Any] | None:
        """The record's fields; None when there is no such file."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.what} {self.path}: {exc.strerror or exc}") from exc
        return self.parse(text)

    def parse(self, text: bytes) -> Mapping[str, Any]:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise self.damaged(f"not JSON ({exc})") from None
        data = self.mapping(document, self.what)
        if data.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.what} {self.path} was written by another version of amperity-async (format "
                f"{data.get('format', 1)!r}) and cannot be verified; start over with --overwrite"
            )
        return data

    def mapping(self, value: Any, name: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.damaged(f"{name} is not an object")
        return value

    def text(self, data: Mapping[str, Any], name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise self.damaged(f"{name} is not a non-empty string")
        return value

    def optional_text(self, data: Mapping[str, Any], name: str) -> str | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.damaged(f"{name} is neither null nor a non-empty string")
        return value

    def count(self, data: Mapping[str, Any], name: str, *, optional: bool = False) -> int:
        value = data.get(name)
        if value is None and optional:
            return -1
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.damaged(f"{name} is not a whole number >= 0")
        return value

    def flag(self, data: Mapping[str, Any], name: str) -> bool:
        value = data.get(name)
        if not isinstance(value, bool):
            raise self.damaged(f"{name} is not true or false")
        return value

    def keys(self, data: Mapping[str, Any], name: str) -> tuple[str, ...]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise self.damaged(f"{name} is not a list of strings")
        return tuple(value)

    def source(self, data: Mapping[str, Any]) -> Source:
        args = data.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise self.damaged("source.args is not a list of strings")
        max_items = self.count(data, "max_items", optional=True)
        shards = self.count(data, "shards", optional=True)
        return Source(
            tenant=self.text(data, "tenant"),
            base_url=self.text(data, "base_url"),
            api_version=self.text(data, "api_version"),
            operation=self.text(data, "operation"),
            args=tuple(args),
            params=dict(self.mapping(data.get("params"), "source.params")),
            max_items=None if max_items < 0 else max_items,
            shards=None if shards < 0 else shards,
        )

    def identity(self, data: Mapping[str, Any]) -> FileIdentity:
        return FileIdentity(self.count(data, "device"), self.count(data, "inode"))

    def position(self, data: Mapping[str, Any], name: str) -> Position:
        sha = data.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise self.damaged(f"{name}.sha256 is not a sha256 digest")
        return Position(
            cursor=Cursor(
                step=self.count(data, "step"),
                next_token=self.optional_text(data, "next_token"),
                done=self.flag(data, "done"),
                previous_keys=self.keys(data, "previous_keys"),
                current_keys=self.keys(data, "current_keys"),
            ),
            length=self.count(data, "length"),
            sha256=sha,
            rows=self.count(data, "rows"),
            pages=self.count(data, "pages"),
        )
