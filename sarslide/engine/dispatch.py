"""Where the runs of a grid execute: in this process, or on a dask.distributed cluster.

:func:`sarslide.ablation.train_grid` sends each run to a *scheduler*: ``None`` runs them
serially in this process, ``"local"`` starts a :class:`~distributed.LocalCluster` on
this machine, an address such as ``"tcp://10.0.0.5:8786"`` uses a real cluster, and a
:class:`distributed.Client` is used as it is. :func:`resolve_scheduler` turns ``"auto"``
into one of these for the machine at hand; :func:`open_client` connects, and an address
that does not answer fails within the package's network timeout (:func:`connect`).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["connect", "open_client", "resolve_scheduler"]


def resolve_scheduler(
    scheduler: Any, device: Any = None, num_threads: int | None = None
) -> tuple[Any, int | None]:
    """``(scheduler, num_threads)`` for a grid, with ``"auto"`` resolved.

    ``"auto"`` is ``"local"`` with one torch thread per worker on a machine without a
    GPU (``device`` not ``"cuda"`` and none available) and with at least two CPU cores
    — each run's small batches use one core far better than two, so two runs at once
    finish sooner than one run on both — and ``None`` (serial, in this process)
    otherwise.  Any other value is returned as it is.
    """
    if scheduler != "auto":
        return scheduler, num_threads
    import torch

    wants_gpu = str(device or "").startswith("cuda") or (
        device is None and torch.cuda.is_available()
    )
    if wants_gpu or (os.cpu_count() or 1) < 2:
        return None, num_threads
    return "local", 1 if num_threads is None else num_threads


def open_client(scheduler: Any):
    """``(client, cluster)`` for ``scheduler`` (``"local"``, an address or a
    :class:`distributed.Client`); ``cluster`` is the :class:`~distributed.LocalCluster`
    started here (close it and the client when done), else ``None``."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=min(os.cpu_count() or 1, 4), threads_per_worker=1, processes=True
        )
        return Client(cluster), cluster
    if isinstance(scheduler, str):
        return connect(scheduler), None
    raise ValueError(
        f"scheduler={scheduler!r}: use None (serial), 'local', an address or a "
        "distributed.Client"
    )


def connect(address: str):
    """A :class:`distributed.Client` of the scheduler at ``address`` within the
    package's network timeout (:func:`sarslide.engine.network.network_settings`); a
    scheduler that refuses, or accepts and never answers, raises
    :class:`~sarslide.acquire.errors.NetworkUnavailableError` naming the address."""
    import asyncio

    from distributed import Client

    from ..acquire.errors import NetworkUnavailableError
    from .network import network_settings

    settings = network_settings()
    try:
        _probe_scheduler(address, settings.timeout)
        return Client(address, timeout=settings.timeout)
    except (OSError, TimeoutError, asyncio.TimeoutError) as err:
        raise NetworkUnavailableError(
            f"no dask scheduler answered at {address} within "
            f"{settings.describe().split(',')[0]} "
            f"({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120] or 'no answer'}); check "
            "that `dask scheduler` runs there and the port is open, or run the grid "
            "serially "
            "(scheduler=None, or --scheduler serial) or on this machine "
            "(scheduler='local'); "
            "SARSLIDE_NETWORK_TIMEOUT sets the wait"
        ) from None


def _probe_scheduler(address: str, timeout: float) -> None:
    """Connect to ``address`` and complete dask's handshake within ``timeout`` seconds
    (distributed bounds the connection but not the handshake's read, so a server that
    accepts and never answers would hold ``Client(address)`` forever). Runs on its own
    thread and event loop, so it works inside a notebook's running loop too."""
    import asyncio
    import threading

    from distributed.comm import connect as comm_connect

    failure: list[BaseException] = []

    async def probe() -> None:
        comm = await asyncio.wait_for(
            comm_connect(address, timeout=timeout), timeout=timeout
        )
        await comm.close()

    def target() -> None:
        try:
            asyncio.run(probe())
        except BaseException as err:  # handed to the caller's thread
            failure.append(err)

    thread = threading.Thread(
        target=target, daemon=True, name="sarslide-scheduler-probe"
    )
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if failure:
        err = failure[0]
        raise (
            err
            if isinstance(err, OSError)
            else TimeoutError(str(err) or type(err).__name__)
        )
