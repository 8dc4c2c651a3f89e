"""An editable wheel that type checkers can follow: a static ``.pth`` line, no import hook.

setuptools' default editable install maps ``amperity_async.custom`` to ``custom/`` with an import
hook, which neither mypy nor pyright run, so installed code "could not be resolved" from outside
the repository. Here the ``.pth`` file names a folder that holds only a link to the generated
``amperity_async/`` (whose ``custom`` and ``testing`` links lead to the hand-written layer): Python,
mypy and pyright all read static ``.pth`` lines, and no other top-level name of the repository
becomes importable. Edits to the sources, and regenerations, show through without reinstalling.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

PACKAGE = "amperity_async"
# Where the link lives, inside the repository's (ignored) build folder.
LINK_FOLDER = Path("build") / "__editable__"


def _record_entry(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def link_package(project: Path) -> Path:
    """``build/__editable__/amperity_async`` -> ``amperity_async/``; returns the folder for the .pth."""
    folder = project / LINK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / PACKAGE
    target = os.path.relpath(project / PACKAGE, folder)
    if link.is_symlink() and os.readlink(link) == target:
        return folder
    staging = folder / f".{PACKAGE}.new"
    staging.unlink(missing_ok=True)
    staging.symlink_to(target, target_is_directory=True)
    os.replace(staging, link)
    return folder


def write_editable_wheel(wheel_directory: Path, metadata_directory: Path, project: Path) -> str:
    """Write the editable wheel from a prepared ``*.dist-info`` folder; return its file name."""
    dist_info = metadata_directory.name
    if not dist_info.endswith(".dist-info"):
        raise ValueError(f"{metadata_directory} is not a .dist-info folder")
    name, version = dist_info.removesuffix(".dist-info").split("-", 1)
    folder = link_package(project.resolve())
    files: dict[str, bytes] = {f"__editable__.{name}-{version}.pth": f"{folder}\n".encode()}
    for path in sorted(metadata_directory.rglob("*")):
        relative = path.relative_to(metadata_directory).as_posix()
        if path.is_file() and relative not in ("RECORD", "WHEEL"):
            files[f"{dist_info}/{relative}"] = path.read_bytes()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: amperity-async tools.editable_wheel\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_entry(arcname, data) for arcname, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    wheel_name = f"{name}-{version}-py3-none-any.whl"
    wheel_directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_directory / wheel_name, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data in files.items():
            wheel.writestr(arcname, data)
    return wheel_name
