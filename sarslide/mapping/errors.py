"""The one error type of :mod:`sarslide.mapping`."""

from __future__ import annotations

__all__ = ["MappingError"]


class MappingError(ValueError):
    """Input that cannot be mapped as asked; the message names the value and the fix."""

    # Shown (and pickled) as sarslide.mapping.MappingError, its public home, as before
    # the module became a subpackage.
    __module__ = "sarslide.mapping"
