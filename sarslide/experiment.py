"""One experiment: the event it studies, its profile, its data folder and its device.

Every entry point — a chapter's first cells, a command of the ``sarslide`` command line,
a benchmark's ``main`` — makes one :class:`Experiment` and hands it on::

    from sarslide.experiment import Experiment

    exp = Experiment.create("hokkaido", "demo")  # event, profile (name or Profile)
    chips = prepare_event(exp)  # sarslide.datasets
    table = train_grid(exp, experiment_grid(exp.profile))  # sarslide.ablation

:meth:`Experiment.create` is where a profile name is looked up
(:func:`sarslide.profiles.get_profile`) and the data folder is chosen
(:func:`resolve_data_dir`); the functions the experiment is passed to take it as it
is. The pretraining arm of another event is the same experiment on that event
(:meth:`Experiment.for_event`); another setting is :meth:`Experiment.with_overrides`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pooch

from .events import get_event
from .profiles import Profile, get_profile

if TYPE_CHECKING:  # a type hint only: this module does not need torch
    import torch

__all__ = ["DATA_DIR_ENV", "Experiment", "resolve_data_dir"]

#: The environment variable that names the data folder.
DATA_DIR_ENV = "SARSLIDE_DATA_DIR"


def resolve_data_dir(
    path: str | os.PathLike | None = None, *, create: bool = True
) -> Path:
    """The folder where cubes, chips, checkpoints and results are cached.

    ``path`` if given, else ``$SARSLIDE_DATA_DIR``, else the user cache
    (``~/.cache/sarslide`` on Linux). Created if missing, unless ``create=False``
    (to name the folder without touching the disk, e.g. before checking that it can be
    written).
    """
    folder = Path(path or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("sarslide"))
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Experiment:
    """What one experiment is about and where it runs.

    Attributes
    ----------
    event:
        The event's name as :data:`sarslide.events.EVENTS` spells it (``"hokkaido"``,
        ``"kaikoura"``): the event whose chips the experiment trains and tests on.
    profile:
        The resolved :class:`~sarslide.profiles.Profile`: data source and every setting.
    data_dir:
        The data folder (:func:`resolve_data_dir`): cubes, chips, checkpoints, results.
    device:
        The torch device runs use (``"cpu"``, ``"cuda"``, a ``torch.device``); ``None``
        picks CUDA when available, else the CPU, where it is used.
    """

    event: str
    profile: Profile
    data_dir: Path
    device: str | torch.device | None = None

    @classmethod
    def create(
        cls,
        event: str = "hokkaido",
        profile: str | Profile | None = None,
        data_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> Experiment:
        """The experiment of ``event`` under ``profile`` (a name, a
        :class:`~sarslide.profiles.Profile`, or ``None`` for ``$SARSLIDE_PROFILE``) in
        ``data_dir`` (``None``: :func:`resolve_data_dir`'s default) on ``device``.

        Nothing is written: the data folder is created by whatever first writes to it.

        Raises
        ------
        KeyError
            For an unknown event or profile name; the message lists the known ones.
        """
        return cls(
            event=get_event(event).name,
            profile=get_profile(profile),
            data_dir=resolve_data_dir(data_dir, create=False),
            device=device,
        )

    def for_event(self, event: str) -> Experiment:
        """The same experiment (profile, folder, device) on another event: e.g. the
        stage-1 pretraining of the ``kaikoura`` arm."""
        return replace(self, event=get_event(event).name)

    def with_overrides(self, **changes: Any) -> Experiment:
        """The same experiment with some profile settings changed
        (``exp.with_overrides(few_shot_draw="balanced")``; see
        :meth:`sarslide.profiles.Profile.with_overrides`)."""
        return replace(self, profile=self.profile.with_overrides(**changes))
