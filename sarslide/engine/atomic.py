"""Atomic writes: a file or a directory appears at its path only when it is complete.

Every writer in the package goes through these two context managers, so an interrupted
run (a crash, Ctrl-C, a full disk) never leaves a half-written file behind: the work
happens under a hidden temporary name next to the target and is renamed onto it with
:func:`os.replace` at the end, or deleted if anything fails.

A write that fails because the device is full raises :class:`DiskFullError`, "no space
left on DEVICE for PATH (needs about N MB)", whatever form the writer's own error took
(numpy's "N requested and M written", GDAL's TIFF errors, torch's "unexpected pos").

Two more guarantees:

* **Only the package's own stores are replaced.** Every directory written by
  :func:`atomic_directory` carries a small marker file (:data:`STORE_MARKER`). An
  existing directory at the target is replaced only when it carries that marker or is
  empty; anything else raises :class:`ForeignPathError` naming the path and what is in
  it — ``save_cube(cube, "data")`` never wipes a user's ``data/``
  folder.
* **Leftovers of a killed process are cleaned up.** Temporary names carry the writer's
  process id (``.<name>.tmp-<pid>-<hex>``); the next write to the same path (and
  :func:`recover_directory`, which readers call before opening a store) removes those of
  processes that no longer run. A kill between the two renames of a store replacement
  (target moved aside to ``.<name>.old-<pid>-<hex>``, new store not yet in place) is
  recovered by moving the old store back.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "STORE_MARKER",
    "existing_ancestor",
    "DiskFullError",
    "ForeignPathError",
    "disk_full_error",
    "mount_of",
    "atomic_file",
    "atomic_directory",
    "recover_directory",
    "remove_leftovers",
    "is_package_store",
]

#: The file every directory written by :func:`atomic_directory` carries.
STORE_MARKER = ".sarslide-store"


class ForeignPathError(FileExistsError):
    """The target path holds something the package did not write; it is left
    untouched."""


class DiskFullError(OSError):
    """No space left on the device that holds a file being written; nothing half-written
    is left under the file's name."""


#: Free space (bytes) below which a failed write is taken to be a full disk.
NEARLY_FULL_BYTES = 1 << 20


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else its nearest existing parent (absolute)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_of(path: str | os.PathLike) -> str:
    """``"/mnt/data (tmpfs)"``: the mount point holding ``path`` and its filesystem
    type, from ``/proc/mounts`` (the mount point alone where that file does not
    exist)."""
    target = os.path.realpath(existing_ancestor(Path(path)))
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
    err: BaseException,
    target: str | os.PathLike,
    *,
    needs_bytes: int | None = None,
    partial: str | os.PathLike | None = None,
) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``err`` raised while writing ``target``, or ``None``
    when ``err`` is not a full disk.

    A full disk is ``errno.ENOSPC`` anywhere in the error's chain, or an ``OSError``,
    ``RuntimeError`` or rasterio/GDAL error (the forms numpy, torch and GDAL use) while
    the device has less than :data:`NEARLY_FULL_BYTES` free, or less than
    ``needs_bytes`` (GDAL deletes its partial files before it raises, so the space is
    free again). ``needs_bytes`` is the size of what was being written, when the writer
    knows it; else the size of the ``partial`` file or folder written so far is reported
    as a lower bound.
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
        if not (
            isinstance(err, (OSError, RuntimeError))
            or type(err).__module__.startswith("rasterio")
        ):
            return None
        try:
            free = shutil.disk_usage(existing_ancestor(target.parent)).free
        except OSError:
            return None
        if free >= NEARLY_FULL_BYTES and not (needs_bytes and free < needs_bytes):
            return None
    written = _size_of(Path(partial)) if partial is not None else 0
    if needs_bytes:
        need = f"needs about {_megabytes(needs_bytes)} MB"
    else:
        written_mb = _megabytes(written)
        need = f"needs more than the {written_mb} MB written before the disk filled"
    try:
        free_now = shutil.disk_usage(existing_ancestor(target.parent)).free
    except OSError:
        free_now = 0
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on {mount_of(target)} for {target} ({need}; "
        f"{_megabytes(free_now)} MB free); nothing was written under that name. Free "
        "some space there, or point SARSLIDE_DATA_DIR / --cache-dir / --out at a disk "
        "with room",
    )


def _temporary_name(path: Path, kind: str, suffix: str = "") -> Path:
    return path.with_name(
        f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
    )


def _leftover_pattern(path: Path, kinds: str) -> re.Pattern:
    return re.compile(
        rf"^\.{re.escape(path.name)}\.({kinds})-(\d+)-[0-9a-f]{{8}}(?:\..*)?$"
    )


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:  # pragma: no cover - e.g. pid out of range
        return False
    return True


def _leftovers(path: Path, kinds: str) -> list[tuple[Path, str]]:
    """Hidden temporaries next to ``path`` whose writer no longer runs: (path, kind)."""
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = _leftover_pattern(path, kinds)
    out = []
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if m is None:
            continue
        if _process_alive(int(m.group(2))):
            continue
        out.append((entry, m.group(1)))
    return out


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def recover_directory(path: str | os.PathLike) -> Path:
    """Repair what a killed writer of the store at ``path`` left behind; return
    ``path``.

    * ``path`` missing but an old copy hidden as ``.<name>.old-*`` (killed between the
      two renames of a replacement): the newest old copy is moved back to ``path``.
    * Hidden ``.<name>.tmp-*`` / ``.<name>.old-*`` entries of dead processes are
      deleted.

    Safe to call at any time; readers of stores call it before opening one.
    """
    path = Path(path)
    leftovers = _leftovers(path, "tmp|old")
    olds = sorted(
        (e for e, kind in leftovers if kind == "old"), key=lambda e: e.stat().st_mtime
    )
    if not path.exists() and olds:
        os.replace(olds[-1], path)
        leftovers = [(e, k) for e, k in leftovers if e != olds[-1]]
    for entry, _ in leftovers:
        _remove(entry)
    return path


_ANY_TMP = re.compile(r"^\.(.+)\.tmp-(\d+)-[0-9a-f]{8}(?:\..*)?$")


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporaries (``.<name>.tmp-<pid>-…``) that killed writers left
    in ``folder``, whatever their target; return what was removed.

    Temporaries of processes that still run are kept; so are hidden old copies of stores
    (``.<name>.old-*``), which :func:`recover_directory` may still need.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        m = _ANY_TMP.match(entry.name)
        if m is None or _process_alive(int(m.group(2))):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def is_package_store(path: str | os.PathLike) -> bool:
    """Whether the directory ``path`` was written by this package (it holds the
    :data:`STORE_MARKER` file)."""
    path = Path(path)
    return path.is_dir() and (path / STORE_MARKER).is_file()


def _describe_contents(path: Path, limit: int = 8) -> str:
    if not path.is_dir():
        return "a file" if path.is_file() else "something that is not a directory"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit]) + (
        f", … ({len(names)} entries)" if len(names) > limit else ""
    )
    return f"a directory holding {shown}"


def _check_replaceable(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if (
        path.is_dir()
        and not path.is_symlink()
        and (is_package_store(path) or not any(path.iterdir()))
    ):
        return
    raise ForeignPathError(
        f"{path} already exists and was not written by sarslide "
        f"({_describe_contents(path)}); nothing was changed. Write to a new path (e.g. "
        f"a subfolder such as '{path / 'store'}'), or move or delete {path} yourself "
        "if it may be replaced"
    )


def _disk_full(err: BaseException, path: Path, needs_bytes: int | None, partial: Path):
    """The :class:`~sarslide.engine.filesystem.DiskFullError` for a failed write, or
    None."""
    if not isinstance(err, Exception):  # Ctrl-C, SystemExit: never re-labelled
        return None
    return disk_full_error(err, path, needs_bytes=needs_bytes, partial=partial)


@contextmanager
def atomic_file(
    path: str | os.PathLike, *, suffix: str = "", needs_bytes: int | None = None
) -> Iterator[Path]:
    """``with atomic_file(path) as tmp:`` write the file at ``tmp``; it replaces
    ``path`` on success and is deleted on any exception. ``suffix`` is appended to the
    temporary name for writers that look at the extension (e.g. GDAL). Temporaries of
    ``path`` left by killed processes are deleted first.

    A write that fails because the disk is full raises
    :class:`~sarslide.engine.filesystem.DiskFullError` ("no space left on DEVICE for
    PATH (needs about N MB)"); ``needs_bytes``, the size being written when the writer
    knows it, goes into that message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for entry, _ in _leftovers(path, "tmp"):
        _remove(entry)
    tmp = _temporary_name(path, "tmp", suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(err, path, needs_bytes, tmp)
        if full is not None:
            raise full from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(
    path: str | os.PathLike, *, needs_bytes: int | None = None
) -> Iterator[Path]:
    """``with atomic_directory(path) as tmp:`` build the directory at ``tmp``; on
    success it replaces ``path`` (an existing store of the package is swapped out, then
    removed); on any exception the temporary directory is deleted and ``path`` is left
    exactly as it was.

    The finished directory gets the marker file :data:`STORE_MARKER`.

    Raises
    ------
    ForeignPathError
        Before anything is written, when ``path`` holds something the package did not
        write (a non-empty directory without the marker, or a file).
    DiskFullError
        The device filled up while the store was written (``needs_bytes``: its size, for
        the message; see :func:`atomic_file`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    _check_replaceable(path)
    tmp = _temporary_name(path, "tmp")
    try:
        yield tmp
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / STORE_MARKER).write_text(
            json.dumps({"writer": "sarslide", "format": 1}) + "\n"
        )
    except BaseException as err:
        full = _disk_full(err, path, needs_bytes, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from err
        raise
    _check_replaceable(path)  # it may have appeared while the store was being built
    old = None
    if path.exists():
        old = _temporary_name(path, "old")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
