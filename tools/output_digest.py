"""Digests of every file a run of the book wrote, to compare two trees' outputs bit for
bit.

A refactor must not change results. Run the same job on the tree before and after, each
with its own data folder, then compare the two folders::

    .venv/bin/python tools/output_digest.py DATA_BEFORE --out before.json
    .venv/bin/python tools/output_digest.py DATA_AFTER --against before.json

Each file gets a SHA-256 of its content, read so that only what a run computes counts:

* ``.pt`` checkpoints: loaded with torch; every tensor's dtype, shape and bytes and
  every other value, in key order (the pickle's bytes are not compared);
* ``.json``: the parsed value with sorted keys;
* ``.parquet``: the table's columns, dtypes and values (pandas);
* anything else (``.npy``, zarr chunks, GeoTIFFs, PNGs, HTML): the raw bytes.

Keys and columns that hold wall-clock measurements (:data:`VOLATILE`) are left out of
the digest, and so are lock files. ``--against`` prints the files whose digest differs,
those present on one side only, and the count of equal ones; it exits 1 when anything
differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

#: Keys / columns that record how long something took, not what it computed.
VOLATILE = frozenset({"seconds", "wall_seconds", "elapsed", "started", "finished"})
#: Files that carry no result (locks, timing records).
SKIPPED_NAMES = frozenset({".results.lock"})
SKIPPED_SUFFIXES = (".lock",)


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` to hash ``h`` canonically (tensors and arrays by their bytes)."""
    import numpy as np

    if isinstance(value, dict):
        for key in sorted(value, key=str):
            if key in VOLATILE:
                continue
            h.update(f"<k:{key}>".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"<seq:{len(value)}>".encode())
        for item in value:
            _feed(h, item)
    elif hasattr(value, "detach") and hasattr(value, "dtype"):  # a torch tensor
        import torch

        t = value.detach().cpu().contiguous()
        h.update(f"<t:{t.dtype}:{tuple(t.shape)}>".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"<a:{value.dtype}:{value.shape}>".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(f"<v:{type(value).__name__}:{value!r}>".encode())


def file_digest(path: Path) -> str:
    """The SHA-256 (hex) of what ``path`` holds, read as the module docstring says."""
    h = hashlib.sha256()
    suffix = path.suffix
    if suffix == ".pt":
        import torch

        _feed(h, torch.load(path, map_location="cpu", weights_only=False))
    elif suffix == ".json":
        _feed(h, json.loads(path.read_text(encoding="utf-8")))
    elif suffix == ".parquet":
        import pandas as pd

        table = pd.read_parquet(path)
        table = table.drop(columns=[c for c in table.columns if c in VOLATILE])
        h.update(repr(list(zip(table.columns, map(str, table.dtypes)))).encode())
        h.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def folder_digests(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` for every file under ``root``, sorted by path."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in SKIPPED_NAMES or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        found[path.relative_to(root).as_posix()] = file_digest(path)
    return found


def compare(
    now: dict[str, str], before: dict[str, str]
) -> tuple[list, list, list, int]:
    """``(differing, only before, only now, number equal)`` of two digest maps."""
    common = sorted(set(now) & set(before))
    differing = [p for p in common if now[p] != before[p]]
    return (
        differing,
        sorted(set(before) - set(now)),
        sorted(set(now) - set(before)),
        len(common) - len(differing),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a data folder a run wrote")
    parser.add_argument("--out", type=Path, help="write the digests here (JSON)")
    parser.add_argument("--against", type=Path, help="digests of the other tree")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    digests = folder_digests(args.folder)
    if args.out:
        args.out.write_text(json.dumps(digests, indent=1) + "\n", encoding="utf-8")
        print(f"{len(digests)} files digested into {args.out}")
    if args.against:
        before = json.loads(args.against.read_text(encoding="utf-8"))
        differing, only_before, only_now, same = compare(digests, before)
        for label, paths in (
            ("differs", differing),
            ("only in the other tree", only_before),
            ("only in this tree", only_now),
        ):
            for p in paths:
                print(f"{label}: {p}")
        print(
            f"{same} files equal, {len(differing)} differ, {len(only_before)} only in "
            f"the other tree, {len(only_now)} only in this one"
        )
        return 1 if differing or only_before or only_now else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
