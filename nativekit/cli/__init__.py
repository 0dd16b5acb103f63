"""The ``nativekit`` command line: ``nativekit new NAME`` scaffolds a working service project.

Run it as ``nativekit`` (installed with the package) or ``python -m nativekit``.
"""
