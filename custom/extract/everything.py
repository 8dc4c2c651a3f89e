"""Every list of a tenant into one folder: one output per list, and per item of a parent list
(e.g. the profiles of every index), extracted concurrently under the client's shared limits.

The folder is locked for the run and holds a manifest (``extract-all.checkpoint``): the run id
every output's checkpoint must carry, the tenant, the windows (the instant the documented default
windows are measured from, or the ``--from``/``--to`` given), the page size, the parent items
whose child lists are extracted, and the outputs started. ``--resume`` reads all of it back, so
it needs no ``--from``/``--to`` and cannot mix two runs; ``--overwrite`` removes the outputs the
manifest lists before starting over.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import attrs

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import OperationInfo
from .checkpoint import FORMAT, Cursor, RecordReader, checkpoint_path
from .connection import Connection
from .errors import CheckpointError, OutputExistsError
from .files import ExtractStats, ProgressHook, file_size
from .journal import new_run_id
from .output import FolderLock, remove, write_atomically
from .plan import Plan
from .specs import ShardSpec, run_concurrently
from .walk import Batch, walk
from .windows import Window, documented_window, format_timestamp, parse_timestamp, required_windows

MANIFEST_NAME = "extract-all.checkpoint"


@attrs.frozen
class Manifest:
    run: str
    kind: str
    tenant: str
    base_url: str
    api_versions: Mapping[str, str]
    started: datetime
    """The instant the documented default windows (e.g. "the previous 7 days") end at."""
    window_from: datetime | None
    window_to: datetime | None
    limit: int | None
    children: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    """Per child list, the parent items whose child lists are extracted (once all are known)."""
    files: tuple[str, ...] = ()
    done: bool = False

    def window_for(self, op: OperationInfo) -> Window:
        default = documented_window(op, self.started)
        return Window(self.window_from or default.start, self.window_to or default.end)

    def params_for(self, op: OperationInfo) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.limit is not None and "limit" in op.query:
            params["limit"] = self.limit
        for low, high in required_windows(op):
            window = self.window_for(op)
            params[low], params[high] = window.start, window.end
        return params

    def to_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "kind": self.kind,
            "run": self.run,
            "done": self.done,
            "tenant": self.tenant,
            "base_url": self.base_url,
            "api_versions": dict(self.api_versions),
            "started": format_timestamp(self.started),
            "from": None if self.window_from is None else format_timestamp(self.window_from),
            "to": None if self.window_to is None else format_timestamp(self.window_to),
            "limit": self.limit,
            "children": {name: list(ids) for name, ids in self.children.items()},
            "files": list(self.files),
        }
        return json.dumps(document, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        reader = RecordReader(folder / MANIFEST_NAME, "manifest")
        data = reader.load()
        if data is None:
            return None

        def stamp(name: str) -> datetime | None:
            text = reader.optional_text(data, name)
            try:
                return None if text is None else parse_timestamp(text, name)
            except ConfigurationError:
                raise reader.damaged(f"{name} is not a timestamp") from None

        started = stamp("started")
        if started is None:
            raise reader.damaged("started is missing")
        limit = reader.count(data, "limit", optional=True)
        versions = reader.mapping(data.get("api_versions"), "api_versions")
        children = reader.mapping(data.get("children", {}), "children")
        files = data.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f for f in files):
            raise reader.damaged("files is not a list of file names")
        return cls(
            run=reader.text(data, "run"),
            kind=reader.text(data, "kind"),
            tenant=reader.text(data, "tenant"),
            base_url=reader.text(data, "base_url"),
            api_versions={str(k): str(v) for k, v in versions.items()},
            started=started,
            window_from=stamp("from"),
            window_to=stamp("to"),
            limit=None if limit < 0 else limit,
            children={name: reader.keys(children, name) for name in children},
            files=tuple(files),
            done=reader.flag(data, "done"),
        )

    def mismatch(self, other: Manifest) -> str | None:
        """How this run's settings differ from the stored ``other``, in words; None when they match."""
        if (self.tenant, self.base_url) != (other.tenant, other.base_url):
            return (
                f"tenant {other.tenant!r} at {other.base_url}, not tenant {self.tenant!r} at {self.base_url}"
            )
        if dict(self.api_versions) != dict(other.api_versions):
            return f"api versions {dict(other.api_versions)}, not {dict(self.api_versions)}"
        if self.limit != other.limit:
            return f"--limit {other.limit}, not {self.limit}"
        for name, mine, theirs in (
            ("--from", self.window_from, other.window_from),
            ("--to", self.window_to, other.window_to),
        ):
            if mine is not None and mine != theirs:
                shown = "none" if theirs is None else format_timestamp(theirs)
                return f"{name} {shown}, not {format_timestamp(mine)}"
        return None


class _ManifestBook:
    """The run's manifest, rewritten atomically (one write at a time) when it changes."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.path = folder / MANIFEST_NAME
        self.manifest = manifest
        self._lock = anyio.Lock()

    async def update(self, **changes: Any) -> None:
        async with self._lock:
            self.manifest = attrs.evolve(self.manifest, **changes)
            await anyio.to_thread.run_sync(write_atomically, self.path, self.manifest.to_bytes())

    async def add_file(self, name: str) -> None:
        if name not in self.manifest.files:
            await self.update(files=(*self.manifest.files, name))


def _safe_name(ident: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ident).lstrip(".") or "_"
    if safe != ident:  # two ids must never share a file
        safe += "-" + hashlib.sha256(ident.encode()).hexdigest()[:8]
    return safe


def _parent_list(child: OperationInfo, candidates: Sequence[OperationInfo]) -> OperationInfo | None:
    """The list whose items' ids fill the child's path, e.g. /indexes for /indexes/{id}/profiles."""
    prefix = child.path.split("/{", 1)[0]
    for op in candidates:
        if op.path == prefix and not op.path_params:
            return op
    return None


def extractable(client: AmperityClient) -> list[OperationInfo]:
    """The list operations this client's api versions can call."""
    return [
        op
        for op in client.registry.list_operations()
        if not op.unstable_only or client.api_versions.get(op.api) == op.stability
    ]


class FolderJob:
    """Every list of a tenant into one folder, planned and finished by the process holding the folder.

    ``async with await FolderJob.begin(client, out_dir, ...) as job``: the folder is locked, its
    manifest read or written, the parent lists' items (e.g. the indexes) found, and every output
    checked (or, with ``overwrite``, removed) before ``job.specs`` are handed out: one spec per
    output, to run anywhere with ``run_shard``. ``await job.finish()`` marks the run done.
    """

    def __init__(self, lock: FolderLock, book: _ManifestBook, specs: tuple[ShardSpec, ...]) -> None:
        self._lock = lock
        self._book = book
        self.specs = specs

    @property
    def manifest(self) -> Manifest:
        return self._book.manifest

    @classmethod
    async def begin(
        cls,
        client: AmperityClient,
        out_dir: Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        window: tuple[datetime | None, datetime | None] | None = None,
        limit: int | None = None,
        kind: str = "extract-all",
        now: datetime | None = None,
        connection: Connection | None = None,
    ) -> FolderJob:
        """``client`` reads the parent lists; ``connection`` (default: the client's) goes into the
        specs, for the workers to build their own clients from."""
        if resume and overwrite:
            raise ConfigurationError("resume and overwrite exclude each other")
        connection = connection or Connection.of(client)
        difference = connection.difference(client)
        if difference is not None:
            raise ConfigurationError(f"the connection for the workers differs from the client: {difference}")
        out_dir = Path(out_dir)
        start, end = window or (None, None)
        wanted = Manifest(
            run=new_run_id(),
            kind=kind,
            tenant=client.tenant,
            base_url=client.base_url,
            api_versions=dict(client.api_versions),
            started=(now or datetime.now(UTC)).astimezone(UTC),
            window_from=start,
            window_to=end,
            limit=limit,
        )
        usable = extractable(client)
        lock = FolderLock(out_dir)
        try:
            manifest = await anyio.to_thread.run_sync(
                functools.partial(_begin, out_dir, wanted, resume=resume, overwrite=overwrite)
            )
            targets, children = await _targets(client, usable, manifest)
            names = [name for _, name, _ in targets]
            if not resume:
                await anyio.to_thread.run_sync(_clear_targets, out_dir, names, overwrite)
            # Written only now: a refused run leaves the folder's manifest as it was.
            book = _ManifestBook(out_dir, manifest)
            await book.update(children=children, files=tuple(dict.fromkeys([*manifest.files, *names])))
            specs = tuple(
                ShardSpec(
                    connection,
                    op.name,
                    out_dir / name,
                    book.manifest.run,
                    tuple(args),
                    book.manifest.params_for(op),
                )
                for op, name, args in targets
            )
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        return cls(lock, book, specs)

    async def finish(self) -> None:
        """Every spec is extracted: the manifest says the run is done."""
        await self._book.update(done=True)

    async def __aenter__(self) -> FolderJob:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.__exit__(None, None, None)


Target = tuple[OperationInfo, str, tuple[str, ...]]
"""An output of the run: the list, the file name, the list's arguments (a parent item's id)."""


async def _targets(
    client: AmperityClient, usable: Sequence[OperationInfo], manifest: Manifest
) -> tuple[list[Target], dict[str, tuple[str, ...]]]:
    """Every output of the run: each top-level list, and each child list of every parent item;
    and the parent items per child list (read once and kept in the manifest, so a resume reads
    the same ones)."""
    targets: list[Target] = []
    children = dict(manifest.children)
    for op in usable:
        if not op.path_params:
            targets.append((op, f"{op.name}.jsonl", ()))
            continue
        parent = _parent_list(op, usable)
        if parent is None or len(op.path_params) != 1:
            continue
        known = children.get(op.name)
        if known is None:
            known = children[op.name] = tuple(await _parent_ids(client, parent, manifest.params_for(parent)))
        targets.extend((op, f"{op.name}-{_safe_name(ident)}.jsonl", (ident,)) for ident in known)
    return targets, children


def _clear_targets(folder: Path, names: Sequence[str], overwrite: bool) -> None:
    """Before a fresh run: outputs holding rows are refused (or, with ``overwrite``, removed), and
    checkpoints of empty outputs, which no resume could use, go."""
    for name in names:
        target = folder / name
        if file_size(target) and not overwrite:
            raise OutputExistsError(
                f"{target} already holds rows; pass --resume to continue or --overwrite to start over"
            )
        if overwrite:
            remove(target)
        remove(checkpoint_path(target))


async def extract_all(
    client: AmperityClient,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    window: tuple[datetime | None, datetime | None] | None = None,
    on_page: ProgressHook | None = None,
    limit: int | None = None,
    kind: str = "extract-all",
    now: datetime | None = None,
) -> list[ExtractStats]:
    """Every list operation (and every child list of each item of its parent list) concurrently,
    one JSON Lines file each. ``window`` bounds the lists that require a time window (either side
    may be None: the documented default then applies); ``now`` is when those defaults end."""
    job = await FolderJob.begin(
        client, out_dir, resume=resume, overwrite=overwrite, window=window, limit=limit, kind=kind, now=now
    )
    async with job:
        results = await run_concurrently(job.specs, client, on_page=on_page)
        await job.finish()
    results.sort(key=lambda s: s.target)
    return results


async def _parent_ids(client: AmperityClient, parent: OperationInfo, params: Mapping[str, Any]) -> list[str]:
    """The ids of every item of the parent list (the parent's own output is written separately)."""
    key = parent.item_key or "id"
    ids: dict[str, None] = {}  # ordered, and each id once

    async def collect(batch: Batch) -> None:
        for item in batch.items:
            ident = item.get(key) if isinstance(item, Mapping) else None
            if isinstance(ident, str) and ident:
                ids[ident] = None

    plan = Plan.build(parent, (), params)
    await walk(client, plan, Cursor(), 0, collect)
    return list(ids)


def _begin(folder: Path, wanted: Manifest, *, resume: bool, overwrite: bool) -> Manifest:
    """The manifest this run goes on with, after checking (or clearing) what the folder holds."""
    stored = Manifest.load(folder)
    if resume and stored is not None:
        difference = wanted.mismatch(stored)
        if difference is not None:
            raise CheckpointError(
                f"{folder} holds a run with {difference}; "
                "resume with the same settings or start over with --overwrite"
            )
        return stored
    if stored is not None and not resume:
        if not overwrite:
            raise OutputExistsError(
                f"{folder} holds an earlier extraction (run {stored.run}, started "
                f"{format_timestamp(stored.started)}); "
                "pass --resume to continue it or --overwrite to start over"
            )
        for name in stored.files:  # only what that run wrote: the folder may hold other files
            remove(checkpoint_path(folder / name))
            remove(folder / name)
    return wanted
