"""Facts about the folder a path lies in: can the package write there, which device
holds it, and a clear error when that device is full.

* :func:`check_folder` checks a folder the user named (``--out``, ``--cache-dir``)
  *before* any compute: a path that is a file, or a folder that cannot be written (a
  read-only mount, no permission), gives one error naming the path and the fix, instead
  of a ``FileExistsError`` or ``OSError [Errno 30]`` traceback after minutes of work.
* :class:`DiskFullError` ("no space left on DEVICE for PATH (needs about N MB)") is what
  every atomic write raises on a full disk; it and :func:`disk_full_error`, which
  recognises the many forms of a full disk, live in :mod:`sarslide.engine.atomic` (level
  0) and are re-exported here.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .atomic import DiskFullError, disk_full_error, existing_ancestor, mount_of

__all__ = [
    "DiskFullError",
    "FolderError",
    "check_folder",
    "disk_full_error",
    "folder_is_writable",
    "mount_of",
]


class FolderError(ValueError):
    """A folder the user named cannot be used (it is a file, or cannot be written)."""


def folder_is_writable(folder: str | os.PathLike) -> bool:
    """Whether a file can be created in the existing folder ``folder`` (tried for real,
    so a read-only mount counts as read-only even for root)."""
    probe = Path(folder) / f".sarslide-write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def check_folder(path: str | os.PathLike, what: str, *, writable: bool = True) -> Path:
    """``path`` as a folder the package may use, checked before any compute.

    Parameters
    ----------
    path:
        The folder (it need not exist yet).
    what:
        How the user named it, for the message (``"--out"``, ``"--cache-dir"``).
    writable:
        Whether files will be written there; ``False`` only checks that it is not a file
        (a filled, read-only cache is fine to read).

    Raises
    ------
    FolderError
        ``path`` (or a parent) is a file, or ``writable`` and nothing can be written in
        it or in its nearest existing parent (read-only filesystem, no permission).
    """
    path = Path(path).expanduser()
    base = existing_ancestor(path)
    if base.exists() and not base.is_dir():
        which = (
            "is a file"
            if base == Path(os.path.abspath(path))
            else f"lies under {base}, which is a file"
        )
        raise FolderError(
            f"{what} {path} {which}, not a folder; give a folder path (it is created "
            "if missing)"
        )
    if writable and not folder_is_writable(base):
        raise FolderError(
            f"{what} {path}: cannot write in {base} (read-only filesystem or no "
            f"permission, on {mount_of(base)}); give a writable folder"
        )
    return path
