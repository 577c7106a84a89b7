"""Rapid-response mapping (a subpackage; its modules follow in the next commit).

Step one of splitting ``sarslide/mapping.py`` by job: the module moves unchanged to
``sarslide/mapping/windows.py`` so its history follows, and this package re-exports it.
"""

from .windows import *  # noqa: F403
from .windows import __all__, _block_plan  # noqa: F401
