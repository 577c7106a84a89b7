"""Frozen stage-1 embeddings, computed once per event and cached on disk.

Every stage-2 run of a pretraining arm uses the *same* frozen stage-1 network, so the
embeddings of an event's chips are the same for all of them: the ablation grid (51 runs
on the paper profile) and chapter 4 compute them once with :func:`cached_embeddings` and
pass slices to :func:`sarslide.train.fit` (``TrainingData.train_embeddings``,
``val_embeddings``).

The cache is one ``.npy`` file per (stage-1 weights, chips, precision), named by a
fingerprint of all three, so a retrained stage-1 network, other chips or another
precision never reuse stale embeddings.  Values are stored in the dtype the forward pass
produced (:attr:`sarslide.engine.precision.Precision.storage_dtype`): float32 for
``"fp32"``, bfloat16 (as its uint16 bit pattern; numpy has no bfloat16) or float16 under
autocast. That is lossless — logits from cached embeddings equal those of recomputed
ones — and the fast path's files are half the size of float32 (2 MiB per 128² chip
instead of 4).

Files are written atomically (:func:`sarslide.engine.atomic.atomic_file`) and filled
batch by batch through a memory map, so memory stays bounded by one batch whatever the
event's size; they are read back memory-mapped (copy-on-write) as well. Each file is
written with a checksum (``<file>.blake2b``), checked before the file is first used in a
process: a damaged cache (zeroed, truncated, edited) is named in an
:class:`EmbeddingsCacheWarning` and computed again, never silently used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models import SiameseClassifier
from ..tasks import STAGE1
from .atomic import atomic_file
from .precision import Precision, resolve_precision, select_device
from .progress import progress_bar
from .runtime import (
    array_fingerprint,
    batch_indices,
    check_images,
    embed_all,
    weights_fingerprint,
)

__all__ = [
    "EmbeddingsCacheWarning",
    "cached_embeddings",
    "checksum_path",
    "embeddings_key",
    "embeddings_path",
    "file_digest",
]

# torch dtype -> (numpy dtype on disk, file tag)
_STORAGE = {
    torch.float32: (np.float32, "float32"),
    torch.bfloat16: (np.uint16, "bfloat16"),
    torch.float16: (np.float16, "float16"),
}


def embeddings_key(
    stage1: SiameseClassifier, images: np.ndarray, precision: Precision
) -> str:
    """Hex fingerprint of what the embeddings depend on: the stage-1 architecture and
    weights (batch-norm statistics included), the chips' values and the precision."""
    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps(stage1.config_dict(), sort_keys=True).encode())
    h.update(weights_fingerprint(stage1).encode())
    h.update(array_fingerprint(np.ascontiguousarray(images, dtype=np.float32)).encode())
    h.update(f"{precision.name}/{precision.device_type}".encode())
    return h.hexdigest()


def embeddings_path(
    cache_dir: str | os.PathLike,
    stage1: SiameseClassifier,
    images: np.ndarray,
    precision: Precision,
) -> Path:
    """The cache file of these embeddings:
    ``cache_dir/embeddings-<key>-<dtype>.npy``."""
    tag = _STORAGE[precision.storage_dtype][1]
    return (
        Path(cache_dir)
        / f"embeddings-{embeddings_key(stage1, images, precision)}-{tag}.npy"
    )


def _as_tensor(array: np.ndarray, storage: torch.dtype) -> Tensor:
    t = torch.from_numpy(array)
    return t.view(torch.bfloat16) if storage == torch.bfloat16 else t


class EmbeddingsCacheWarning(UserWarning):
    """A cached embeddings file failed its checksum (or has none); it is computed
    again."""


def checksum_path(path: Path) -> Path:
    """The checksum written with an embeddings file: ``<file>.blake2b`` (hex digest)."""
    return path.with_name(path.name + ".blake2b")


def file_digest(path: Path) -> str:
    """blake2b hex digest of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


#: Files whose checksum was verified in this process: path -> (size, mtime_ns).
_VERIFIED: dict[str, tuple[int, int]] = {}


def _verified(path: Path) -> bool:
    """Whether the file's bytes match the checksum written with it (checked once per
    process and file version); a mismatch or a missing checksum warns and returns
    False."""
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(str(path)) == stamp:
        return True
    try:
        expected = checksum_path(path).read_text().strip()
    except OSError:
        expected = None
    if expected is not None and file_digest(path) == expected:
        _VERIFIED[str(path)] = stamp
        return True
    why = (
        "has no checksum (its writer stopped before finishing)"
        if expected is None
        else "does not match its checksum"
    )
    warnings.warn(
        f"the cached embeddings {path} {why}: the file is damaged or incomplete, so "
        "it is not "
        "used; the embeddings are computed again and the cache is rewritten",
        EmbeddingsCacheWarning,
        stacklevel=4,
    )
    return False


def _load(
    path: Path, shape: tuple[int, ...], storage: torch.dtype, *, verify: bool = True
) -> Tensor | None:
    """The cached tensor, or None if the file is missing, unreadable, of another shape
    or fails its checksum (:func:`checksum_path`)."""
    if not path.is_file():
        return None
    try:
        array = np.load(
            path, mmap_mode="c"
        )  # copy-on-write: writable, nothing read yet
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != _STORAGE[storage][0]:
        return None
    if verify and not _verified(path):
        return None
    return _as_tensor(array, storage)


def _preallocate(path: Path) -> None:
    """Reserve the file's blocks now, so a full disk fails here with ENOSPC (a clear
    error) instead of a SIGBUS when the memory map is written."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise
            # the filesystem cannot preallocate (EOPNOTSUPP, EINVAL): write as before


@torch.no_grad()
def cached_embeddings(
    stage1: SiameseClassifier,
    images: np.ndarray,
    cache_dir: str | os.PathLike | None,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
    progress: bool = False,
) -> Tensor:
    """Frozen stage-1 embeddings ``(N, 2*embedding_channels, H, W)`` of ``images``,
    cached.

    Parameters
    ----------
    stage1:
        The frozen stage-1 network of the arm (the one given to
        :class:`~sarslide.models.Segmenter`); it runs in eval mode and is left as it
        was.
    images:
        Standardised chips ``(N, 4, H, W)`` float32, no NaN: typically all chips of the
        event that stage-2 runs train, validate or test on.
    cache_dir:
        Folder of the cache files (e.g. next to the event's chips); ``None`` computes
        without caching.
    batch_size, device:
        Forward-pass batch size; device (``None``: CUDA when available, else CPU).
    precision:
        As in :class:`sarslide.train.TrainConfig`; pass the same one the stage-2 runs
        use.
    progress:
        A progress bar over chips while computing.

    Returns
    -------
    torch.Tensor
        On the CPU, row ``i`` the embedding of ``images[i]``, in the precision's storage
        dtype (float32, or bfloat16/float16 under autocast); memory-mapped from the
        cache file when there is one.  Index it like the chips
        (``emb[torch.as_tensor(idx)]``) and pass the rows to
        :class:`sarslide.train.TrainingData` (``train_embeddings=...``).
    """
    STAGE1.check_model(stage1)
    images = check_images(images, stage1, "chips")
    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    storage = prec.storage_dtype
    shape = (images.shape[0], stage1.embedding_dim) + images.shape[2:]

    path = (
        None if cache_dir is None else embeddings_path(cache_dir, stage1, images, prec)
    )
    if path is not None:
        cached = _load(path, shape, storage)
        if cached is not None:
            return cached

    prec.apply_backend_settings()
    was_training = stage1.training
    stage1.eval()
    try:
        with prec.prepared(stage1, dev):
            if path is None:
                return _compute(stage1, images, batch_size, dev, prec, progress)
            dtype = _STORAGE[storage][0]
            needs = int(np.prod(shape)) * np.dtype(dtype).itemsize
            checksum_path(path).unlink(missing_ok=True)  # of a file being replaced
            with atomic_file(path, suffix=".npy", needs_bytes=needs) as tmp:
                out = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=dtype, shape=shape
                )
                _preallocate(tmp)
                _compute(stage1, images, batch_size, dev, prec, progress, out=out)
                out.flush()
                del out
                digest = file_digest(tmp)
            # the checksum after the data: a file without one is never trusted
            with atomic_file(checksum_path(path)) as tmp:
                tmp.write_text(digest + "\n")
            st = path.stat()
            _VERIFIED[str(path)] = (
                st.st_size,
                st.st_mtime_ns,
            )  # its digest was just taken
    finally:
        stage1.train(was_training)
    loaded = _load(path, shape, storage)
    if loaded is None:  # pragma: no cover - the file was just written
        raise OSError(f"could not read back the embeddings just written to {path}")
    return loaded


def _compute(
    stage1: SiameseClassifier,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    progress: bool,
    out: np.ndarray | None = None,
) -> Tensor | None:
    """Embed all chips in batches; into the memory map ``out`` if given, else
    returned."""
    parts = []
    with progress_bar(
        total=len(images),
        desc="stage-1 embeddings",
        unit="chip",
        disable=not progress,
    ) as bar:
        for idx in batch_indices(len(images), batch_size):
            emb = embed_all(stage1, images[idx], len(idx), device, precision)
            if out is None:
                parts.append(emb)
            else:
                bits = (
                    emb.view(torch.int16).numpy().view(np.uint16)
                    if emb.dtype == torch.bfloat16
                    else emb.numpy()
                )
                out[idx[0] : idx[-1] + 1] = bits
            bar.update(len(idx))
    return torch.cat(parts) if out is None else None
