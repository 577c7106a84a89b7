"""Progress bars for long work: tqdm's notebook widget where ipywidgets is installed
(Jupyter, Colab), else the plain text bar (terminals, CI, nbmake logs)."""

from __future__ import annotations

__all__ = ["progress_bar"]


def progress_bar(**kwargs):
    """A tqdm bar; keyword arguments go to :class:`tqdm.tqdm` (``total``, ``desc``, ``disable``, …)."""
    try:
        import ipywidgets  # noqa: F401

        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(**kwargs)
