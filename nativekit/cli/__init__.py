"""The ``nativekit`` command line: ``nativekit new NAME`` scaffolds a working service project,
``nativekit update`` merges newer versions of the project template into it.

Run it as ``nativekit`` (installed with the package) or ``python -m nativekit``.
"""

from nativekit.cli._main import main

__all__ = ["main"]
