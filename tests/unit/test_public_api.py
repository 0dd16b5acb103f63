"""The public surface of nativekit."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import nativekit


def test_public_names_are_exactly_all() -> None:
    """Every public, non-module name of nativekit is listed in __all__, sorted."""
    public = [
        n
        for n, v in vars(nativekit).items()
        if not n.startswith("_") and not isinstance(v, ModuleType)
    ]
    assert nativekit.__all__ == sorted(public, key=str.casefold)


def test_import_does_not_load_drivers() -> None:
    """`import nativekit` loads neither redis, aiokafka nor opentelemetry."""
    code = (
        "import sys, nativekit; "
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'redis', 'aiokafka', 'opentelemetry'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
