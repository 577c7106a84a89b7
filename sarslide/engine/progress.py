"""Progress bars for long work: tqdm's notebook widget where ipywidgets is installed
(Jupyter, Colab), else the plain text bar (terminals, CI, nbmake logs).

``TQDM_DISABLE=1`` in the environment turns every bar off, even where a caller passes
``disable=False`` (tqdm itself lets an explicit argument win over the variable)."""

from __future__ import annotations

import os

__all__ = ["progress_bar"]


def progress_bar(**kwargs):
    """A tqdm bar; keyword arguments go to :class:`tqdm.tqdm` (``total``, ``desc``,
    ``disable``, …)."""
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
        "off",
    ):
        kwargs["disable"] = True
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(**kwargs)
