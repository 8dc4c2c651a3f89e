"""Output files with one writer: an exclusive lock for the run, verified lengths, durable appends.

The lock is ``flock`` on the output itself (or on the folder of an ``extract-all``), taken without
waiting: a second writer fails at once instead of interleaving its rows. The kernel drops it when
the process ends, however it ends, so a killed run never leaves a stale lock behind.
Every method here blocks; callers run the slow ones (hashing whole files, syncing) in a worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Self

import attrs

from .errors import OutputError, OutputLockedError

_READ_CHUNK = 1 << 20


@attrs.frozen
class FileIdentity:
    device: int
    inode: int


def _lock(fd: int, path: Path, what: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputLockedError(
            f"{path} is being written by another extraction ({what} is locked); "
            f"wait for it to finish or choose another output"
        ) from None
    except OSError as exc:
        raise OutputError(path, "lock", exc) from exc


class OutputFile:
    """An output opened for appending by this process alone (``with OutputFile.open(path)``)."""

    def __init__(self, path: Path, fd: int, existed: bool) -> None:
        self.path = path
        self._fd = fd
        self.existed = existed
        """Whether the file was there before this run opened it (a checkpoint without it is a lost output)."""

    @classmethod
    def open(cls, path: Path) -> OutputFile:
        if path.is_dir():
            raise OutputError(path, "write rows to", IsADirectoryError(errno.EISDIR, "it is a folder"))
        existed = path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise OutputError(path, "open", exc) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputError(path, "write rows to", OSError(errno.EINVAL, "it is not a regular file"))
            _lock(fd, path, "the output")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, existed)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the lock

    @property
    def identity(self) -> FileIdentity:
        info = os.fstat(self._fd)
        return FileIdentity(info.st_dev, info.st_ino)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def digest_of_prefix(self, length: int) -> hashlib._Hash:
        """A running sha256 of the first ``length`` bytes (to compare, and to go on hashing appends)."""
        digest = hashlib.sha256()
        offset = 0
        try:
            while offset < length:
                chunk = os.pread(self._fd, min(_READ_CHUNK, length - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
        except OSError as exc:
            raise OutputError(self.path, "read", exc) from exc
        return digest

    def truncate(self, length: int) -> None:
        try:
            os.ftruncate(self._fd, length)
            os.fsync(self._fd)
        except OSError as exc:
            raise OutputError(self.path, "truncate", exc) from exc

    def write_at(self, offset: int, data: bytes, *, sync: bool = True) -> None:
        """Write ``data`` at ``offset`` (and, with ``sync``, make everything written durable)."""
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise OutputError(self.path, "write", exc) from exc

    def sync(self) -> None:
        """Make everything written so far durable."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise OutputError(self.path, "write", exc) from exc


class FolderLock:
    """An exclusive lock on a folder, for runs that write many outputs into it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
            )
        except NotADirectoryError as exc:
            raise OutputError(folder, "use as the output folder", exc) from exc
        except OSError as exc:
            raise OutputError(folder, "open the output folder", exc) from exc
        try:
            _lock(self._fd, folder, "the folder")
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def write_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new content, never a mix;
    with ``durable``, the new content is on disk once this returns (else it may be lost with the
    machine, not with the process)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(path, "write", exc) from exc


def sync_folder(folder: Path) -> None:
    """Make renames and unlinks in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename itself still happened
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(path, "remove", exc) from exc
