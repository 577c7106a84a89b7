"""Facts about the folder a path lies in: can the package write there, which device holds
it, and a clear error when that device is full.

* :func:`check_folder` checks a folder the user named (``--out``, ``--cache-dir``)
  *before* any compute: a path that is a file, or a folder that cannot be written (a
  read-only mount, no permission), gives one error naming the path and the fix, instead of
  a ``FileExistsError`` or ``OSError [Errno 30]`` traceback after minutes of work.
* :func:`disk_full_error` turns the many ways a full disk shows itself (numpy's
  ``"N requested and M written"``, GDAL's ``TIFFAppendToStrip``, torch's ``unexpected
  pos``, ``OSError [Errno 28]``) into :class:`DiskFullError`: "no space left on DEVICE for
  PATH (needs about N MB)". :mod:`sarslide.atomic` applies it to every atomic write.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["DiskFullError", "FolderError", "check_folder", "disk_full_error", "mount_of", "folder_is_writable"]

#: Free space (bytes) below which a failed write is taken to be a full disk.
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(OSError):
    """No space left on the device that holds a file being written; nothing half-written
    is left under the file's name."""


class FolderError(ValueError):
    """A folder the user named cannot be used (it is a file, or cannot be written)."""


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_of(path: str | os.PathLike) -> str:
    """``"/mnt/data (tmpfs)"``: the mount point holding ``path`` and its filesystem type,
    from ``/proc/mounts`` (the mount point alone where that file does not exist)."""
    target = os.path.realpath(_existing_ancestor(Path(path)))
    best, kind = "/", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, parts[2]
    except OSError:
        return best
    return f"{best} ({kind})" if kind else best


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.1f}" if n < 10e6 else f"{n / 1e6:.0f}"


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def disk_full_error(
    err: BaseException, target: str | os.PathLike, *, needs_bytes: int | None = None, partial: str | os.PathLike | None = None
) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``err`` raised while writing ``target``, or ``None``
    when ``err`` is not a full disk.

    A full disk is ``errno.ENOSPC`` anywhere in the error's chain, or an ``OSError``,
    ``RuntimeError`` or rasterio/GDAL error (the forms numpy, torch and GDAL use) while the
    device has less than :data:`NEARLY_FULL_BYTES` free, or less than ``needs_bytes``
    (GDAL deletes its partial files before it raises, so the space is free again).
    ``needs_bytes`` is the size of what was being written, when the writer knows it; else
    the size of the ``partial`` file or folder written so far is reported as a lower bound.
    """
    target = Path(target)
    chain, seen, cur = [], set(), err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(isinstance(e, DiskFullError) for e in chain):
        return None
    enospc = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain)
    if not enospc:
        if not (isinstance(err, (OSError, RuntimeError)) or type(err).__module__.startswith("rasterio")):
            return None
        try:
            free = shutil.disk_usage(_existing_ancestor(target.parent)).free
        except OSError:
            return None
        if free >= NEARLY_FULL_BYTES and not (needs_bytes and free < needs_bytes):
            return None
    written = _size_of(Path(partial)) if partial is not None else 0
    if needs_bytes:
        need = f"needs about {_megabytes(needs_bytes)} MB"
    else:
        need = f"needs more than the {_megabytes(written)} MB written before the disk filled"
    try:
        free_now = shutil.disk_usage(_existing_ancestor(target.parent)).free
    except OSError:
        free_now = 0
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on {mount_of(target)} for {target} ({need}; "
        f"{_megabytes(free_now)} MB free); nothing was written under that name. Free some "
        "space there, or point SARSLIDE_DATA_DIR / --cache-dir / --out at a disk with room",
    )


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
    base = _existing_ancestor(path)
    if base.exists() and not base.is_dir():
        which = "is a file" if base == Path(os.path.abspath(path)) else f"lies under {base}, which is a file"
        raise FolderError(f"{what} {path} {which}, not a folder; give a folder path (it is created if missing)")
    if writable and not folder_is_writable(base):
        raise FolderError(
            f"{what} {path}: cannot write in {base} (read-only filesystem or no permission, on "
            f"{mount_of(base)}); give a writable folder"
        )
    return path
