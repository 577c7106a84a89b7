"""Atomic writes: a file or a directory appears at its path only when it is complete.

Every writer in the package goes through these two context managers, so an interrupted
run (a crash, Ctrl-C, a full disk) never leaves a half-written file behind: the work
happens under a hidden temporary name next to the target and is renamed onto it with
:func:`os.replace` at the end, or deleted if anything fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_file", "atomic_directory"]


def _temporary_name(path: Path, kind: str, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_file(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """``with atomic_file(path) as tmp:`` write the file at ``tmp``; it replaces ``path``
    on success and is deleted on any exception. ``suffix`` is appended to the temporary
    name for writers that look at the extension (e.g. GDAL)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, "tmp", suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_directory(path) as tmp:`` build the directory at ``tmp``; on success it
    replaces ``path`` (an existing ``path`` is swapped out, then removed); on any exception
    the temporary directory is deleted and ``path`` is left exactly as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = _temporary_name(path, "old")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
