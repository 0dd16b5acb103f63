"""promtool for the monitoring tests: found, or a skip that says how to get it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from PATH or the venv (`make test` unpacks Debian's into .venv/bin)."""
    venv = str(Path(sys.executable).parent)
    found = shutil.which("promtool") or shutil.which("promtool", path=venv)
    if found is None:
        pytest.skip(
            "promtool not found: the alert rule tests need it. On Debian/Ubuntu `make test` "
            "unpacks it from the 'prometheus' package into .venv/bin (apt-get download); "
            "elsewhere put promtool (from a Prometheus release) on PATH."
        )
    return found


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool with ``args``; its output is in the assertion message on failure."""
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
