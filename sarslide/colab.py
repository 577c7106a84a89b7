"""Google Colab: an offer to keep the data cache on Google Drive, where it survives.

A Colab runtime loses its disk when it resets or is recycled (idle time-outs, the daily
limit of the free tier), and with it the default data cache (``~/.cache/sarslide``):
cubes, chips, stage-1 runs and the grid's finished runs.  :func:`setup_data_dir`,
called from each chapter's first cell, offers to point ``$SARSLIDE_DATA_DIR`` at a
folder on the student's Google Drive instead, so that a later session resumes where the
last one stopped.  It is never required, and it does nothing off Colab.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .experiment import DATA_DIR_ENV, resolve_data_dir

__all__ = ["DRIVE_FOLDER", "DRIVE_MOUNT", "USE_DRIVE_ENV", "on_colab", "setup_data_dir"]

#: Where Colab mounts Google Drive.
DRIVE_MOUNT = Path("/content/drive")
#: The cache's folder inside the mount (``My Drive/sarslide-data`` in Drive's web page).
DRIVE_FOLDER = "MyDrive/sarslide-data"
#: Environment variable that answers the offer without editing a cell (``1``/``true``).
USE_DRIVE_ENV = "SARSLIDE_USE_DRIVE"


def on_colab() -> bool:
    """Whether this Python runs on a Google Colab runtime (``$COLAB_RELEASE_TAG`` is set
    there, and the ``google.colab`` package is importable)."""
    if not os.environ.get("COLAB_RELEASE_TAG"):
        return False
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no "google" package, or a stub without a spec
        return False


def _wants_drive(use_drive: bool | None) -> bool:
    if use_drive is not None:
        return bool(use_drive)
    return os.environ.get(USE_DRIVE_ENV, "").strip().lower() in ("1", "true", "yes")


def setup_data_dir(
    use_drive: bool | None = None,
    *,
    drive_mount: str | os.PathLike = DRIVE_MOUNT,
    folder: str = DRIVE_FOLDER,
) -> Path:
    """The data cache's folder; on Colab, first offer to keep it on Google Drive.

    Parameters
    ----------
    use_drive:
        On Colab: ``True`` mounts Google Drive at ``drive_mount`` (Colab asks for
        permission once per session) and sets ``$SARSLIDE_DATA_DIR`` to
        ``<drive_mount>/<folder>`` for this process, so every later call of the
        package caches there; ``False`` keeps the runtime's disk and prints the offer;
        ``None`` reads ``$SARSLIDE_USE_DRIVE`` (``1``/``true``), else ``False``.
    drive_mount, folder:
        Where Drive is mounted and the cache's folder inside it.

    Returns
    -------
    Path
        The folder the package caches in
        (:func:`sarslide.experiment.resolve_data_dir`).

    Off Colab nothing happens (whatever ``use_drive`` says), and a
    ``$SARSLIDE_DATA_DIR`` that is already set is kept everywhere.  If Drive cannot be
    mounted (permission refused, no Drive), the runtime's disk is used and the reason is
    printed: the book runs either way.  Drive is slower than the runtime's disk for
    many small files; the chip stores and checkpoints are few large files.
    """
    if not on_colab() or os.environ.get(DATA_DIR_ENV):
        return resolve_data_dir()
    if not _wants_drive(use_drive):
        print(
            f"sarslide caches data in {resolve_data_dir()}, which Colab deletes when "
            "the runtime "
            "resets. To keep it (and resume the chapters' training) on Google Drive, "
            "call sarslide.colab.setup_data_dir(use_drive=True) or set use_drive = "
            "True "
            "in the first cell."
        )
        return resolve_data_dir()
    mount = Path(drive_mount)
    target = mount / folder
    if not target.parent.is_dir():
        try:
            from google.colab import drive

            drive.mount(str(mount))
        except Exception as err:  # noqa: BLE001 - any refusal leaves the default cache
            print(
                f"Google Drive was not mounted ({type(err).__name__}: {err}); sarslide "
                f"keeps caching in {resolve_data_dir()}, which the runtime loses when "
                "it resets"
            )
            return resolve_data_dir()
    if not target.parent.is_dir():
        print(
            f"Google Drive is mounted but {target.parent} does not exist; sarslide "
            "keeps "
            f"caching in {resolve_data_dir()}"
        )
        return resolve_data_dir()
    target.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_DIR_ENV] = str(target)
    print(f"sarslide caches data on Google Drive in {target} (${DATA_DIR_ENV})")
    return resolve_data_dir()
