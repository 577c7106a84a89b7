"""The ablation grid's results table on disk: one file per run, merged on read.

Layout of a results folder (:func:`sarslide.ablation.results_dir`)::

    <out>/settings.json              the fingerprint of the settings that made it
    <out>/runs/<run_id>.parquet      the tidy rows of one finished run (written once,
                                     atomically)
    <out>/runs/<run_id>.timing.json  what the run cost: epochs, seconds per epoch,
                                     device
    <out>/runs/baseline.parquet      the non-learned reference rows (log-ratio,
                                     random guess)
    <out>/results.parquet            every run's rows merged: a convenience copy,
                                     rewritten under a folder lock after each
                                     finished run

Each process writes only the files of the runs it finished, so two ``sarslide grid``
processes on one folder (two terminals, two Colab tabs, a notebook and a cluster) never
overwrite each other's rows: :func:`read_results` merges the run files on disk, and the
merged copy is rewritten under a lock (:mod:`filelock`) from the files, never from one
process's memory.

A damaged file is never fatal: a truncated or unreadable run file is named in a
:class:`CorruptResultsWarning` and left out, so its run counts as missing; the next grid
call scores it again from its kept checkpoints (a finished run does not train again) and
rewrites the file. The merged copy is never read, only rewritten.

:func:`check_settings` keeps one folder to one set of settings: the first grid call
records their fingerprint in ``settings.json``, and a call with other settings is
refused.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .atomic import atomic_file

__all__ = [
    "RESULTS_FILE",
    "RUNS_FOLDER",
    "SETTINGS_FILE",
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
    "check_settings",
]

RESULTS_FILE = "results.parquet"
RUNS_FOLDER = "runs"
SETTINGS_FILE = "settings.json"
#: The layout of ``settings.json`` this version writes and accepts.
_SETTINGS_FORMAT = 2
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
    """Every run's tidy rows in ``out``: the per-run files, merged.

    An empty frame when nothing is there.  Unreadable files give a
    :class:`CorruptResultsWarning` and are left out.
    """
    parts: list[pd.DataFrame] = []
    folder = Path(out) / RUNS_FOLDER
    if folder.is_dir():
        for path in sorted(folder.glob("*.parquet")):
            frame = _read_parquet(path)
            if frame is not None and len(frame):
                parts.append(frame)
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


def _read_settings(marker: Path) -> dict[str, Any]:
    try:
        recorded = json.loads(marker.read_text())
        if not isinstance(recorded, dict):
            raise ValueError("not a JSON object")
        return recorded
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{marker} is unreadable ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:80]}); it "
            "records which settings made the results in its folder. If they were made "
            "with "
            f"these settings, delete it (rm '{marker}') and run again (it is "
            "rewritten); "
            "otherwise use another out_dir"
        ) from None


def check_settings(
    out: str | os.PathLike,
    *,
    key: str,
    event: str,
    profile: Any,
    shape_fields: Sequence[str] = (),
) -> None:
    """Refuse to mix runs made under other settings into one results folder.

    ``<out>/settings.json`` records the fingerprint ``key`` of the settings the folder
    was made with (:func:`sarslide.ablation.results_key`), the ``event`` and the
    ``profile`` (a dataclass) in full. A folder made with another fingerprint is an
    error that names both fingerprints, the settings that changed (all but
    ``shape_fields``, which choose runs, not how a run is made) and the fix; a broken
    ``settings.json`` is named, with the fix. Nothing is written when the marker is
    there (a finished grid in a read-only folder stays readable).
    """
    marker = Path(out) / SETTINGS_FILE
    settings = asdict(profile)
    if marker.exists():
        recorded = _read_settings(marker)
        if recorded.get("key") == key and recorded.get("format") == _SETTINGS_FORMAT:
            return
        before = recorded.get("profile", {})
        now = json.loads(json.dumps(settings, default=str))
        changed: Any = sorted(
            k
            for k in set(before) | set(now)
            if k not in shape_fields and before.get(k) != now.get(k)
        )
        if recorded.get("event") != event:
            changed = ["event", *changed]
        if not changed:  # same settings, recorded in a layout this version does not use
            changed = (
                f"the record's format {recorded.get('format')!r}, not "
                f"{_SETTINGS_FORMAT}"
            )
        raise ValueError(
            f"{out} holds results made with other settings (fingerprint "
            f"{recorded.get('key')} "
            f"for event {recorded.get('event')!r}, this run {key}; changed: "
            f"{changed}); "
            "use another out_dir, or the default results_dir(exp), which is keyed "
            "on the settings"
        )
    payload = {
        "format": _SETTINGS_FORMAT,
        "key": key,
        "event": event,
        "profile": settings,
    }
    with atomic_file(marker) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, default=str))
