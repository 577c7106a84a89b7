"""The ablation grid's results table on disk: one file per run, merged on read.

Layout of a results folder (:func:`sarslide.ablation.results_dir`)::

    <out>/runs/<run_id>.parquet      the tidy rows of one finished run (written once,
    atomically) <out>/runs/<run_id>.timing.json  what the run cost: epochs, seconds per
    epoch, device <out>/runs/baseline.parquet      the non-learned reference rows
    (log-ratio, random guess) <out>/results.parquet            every run's rows merged:
    a convenience copy, rewritten
                                     under a folder lock after each finished run

Each process writes only the files of the runs it finished, so two ``sarslide grid``
processes on one folder (two terminals, two Colab tabs, a notebook and a cluster) never
overwrite each other's rows: :func:`read_results` merges whatever is on disk, and the
merged copy is rewritten under a lock (:mod:`filelock`) from the files, never from one
process's memory.  Tables written by older versions (a ``results.parquet`` without a
``runs/`` folder) are read as before; their rows count for every run that has no file.

A damaged file is never fatal: a truncated or unreadable ``results.parquet`` or run file
is named in a :class:`CorruptResultsWarning` and left out, so its runs count as missing;
the next grid call scores them again from their kept checkpoints (a finished run does
not train again) and rewrites the file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_file

__all__ = [
    "RESULTS_FILE",
    "RUNS_FOLDER",
    "BASELINE_FILE_ID",
    "CorruptResultsWarning",
    "run_file",
    "timing_file",
    "write_run_rows",
    "write_run_timing",
    "read_run_timings",
    "read_results",
    "merge_results",
    "run_lock",
    "finished_run_ids",
]

RESULTS_FILE = "results.parquet"
RUNS_FOLDER = "runs"
#: The file id of the non-learned reference rows (run ids ``log_ratio`` and ``random``).
BASELINE_FILE_ID = "baseline"
_LOCK = ".results.lock"
#: Seconds a process waits for another one to release the folder lock before it fails.
LOCK_TIMEOUT_S = 600.0


class CorruptResultsWarning(UserWarning):
    """A results file could not be read; its runs count as missing and are scored
    again."""


def run_file(out: str | os.PathLike, file_id: str) -> Path:
    """``<out>/runs/<file_id>.parquet``: the rows of one finished run (or the
    baseline)."""
    return Path(out) / RUNS_FOLDER / f"{file_id}.parquet"


def timing_file(out: str | os.PathLike, run_id: str) -> Path:
    """``<out>/runs/<run_id>.timing.json``: epochs and seconds of one finished run."""
    return Path(out) / RUNS_FOLDER / f"{run_id}.timing.json"


def write_run_rows(out: str | os.PathLike, file_id: str, rows: pd.DataFrame) -> Path:
    """Write one run's tidy rows atomically to :func:`run_file` and return its path."""
    path = run_file(out, file_id)
    with atomic_file(path, suffix=".parquet") as tmp:
        rows.to_parquet(tmp, index=False)
    return path


def write_run_timing(
    out: str | os.PathLike, run_id: str, timing: dict[str, Any]
) -> Path:
    """Write what a run cost (a JSON object) atomically to :func:`timing_file`."""
    path = timing_file(out, run_id)
    with atomic_file(path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(timing, indent=2, default=str))
    return path


def read_run_timings(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{run_id: timing}`` of every finished run in ``out`` that recorded its cost
    (unreadable timing files are skipped: they only feed an estimate)."""
    folder = Path(out) / RUNS_FOLDER
    timings = {}
    if not folder.is_dir():
        return timings
    for path in sorted(folder.glob("*.timing.json")):
        try:
            timings[path.name[: -len(".timing.json")]] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return timings


def _read_parquet(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        return None
    except (
        Exception
    ) as err:  # pyarrow: ArrowInvalid ("corrupted", "magic bytes"), OSError
        warnings.warn(
            f"{path} is corrupt or truncated ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120]}); "
            "it is left out, so its runs count as missing: the next grid call scores "
            "them again "
            "from their kept checkpoints and rewrites it (or delete it yourself)",
            CorruptResultsWarning,
            stacklevel=3,
        )
        return None


def read_results(out: str | os.PathLike) -> pd.DataFrame:
    """Every run's tidy rows in ``out``: the per-run files, plus the rows of
    ``results.parquet`` (an older version's table) for runs that have no file.

    An empty frame when nothing is there.  Unreadable files give a
    :class:`CorruptResultsWarning` and are left out.
    """
    out = Path(out)
    parts: list[pd.DataFrame] = []
    folder = out / RUNS_FOLDER
    if folder.is_dir():
        for path in sorted(folder.glob("*.parquet")):
            frame = _read_parquet(path)
            if frame is not None and len(frame):
                parts.append(frame)
    have = set().union(*(set(p["run_id"]) for p in parts)) if parts else set()
    legacy = _read_parquet(out / RESULTS_FILE)
    if legacy is not None and len(legacy):
        legacy = legacy[~legacy["run_id"].isin(have)]
        if len(legacy):
            parts.insert(0, legacy)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def finished_run_ids(out: str | os.PathLike) -> set[str]:
    """Run ids with rows in ``out`` (``log_ratio`` and ``random`` for the baseline)."""
    table = read_results(out)
    return set(table["run_id"]) if len(table) else set()


def _lock(path: Path):
    from filelock import FileLock

    return FileLock(str(path), timeout=LOCK_TIMEOUT_S)


def merge_results(out: str | os.PathLike) -> pd.DataFrame:
    """Rewrite ``<out>/results.parquet`` from every run file on disk (under the folder's
    lock, so a concurrent writer's rows are never dropped) and return the merged
    table."""
    out = Path(out)
    with _lock(out / _LOCK):
        table = read_results(out)
        with atomic_file(out / RESULTS_FILE, suffix=".parquet") as tmp:
            table.to_parquet(tmp, index=False)
    return table


def run_lock(out: str | os.PathLike, run_id: str):
    """A :class:`filelock.FileLock` held while one process trains and scores ``run_id``,
    so a second process on the same folder waits for it and reuses its rows instead of
    training the same run into the same checkpoint folder."""
    path = Path(out) / RUNS_FOLDER / f".{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return _lock(path)
