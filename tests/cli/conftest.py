"""Fixtures for the operator commands: run ``python -m nativekit`` as operators do."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Ran:
    """Exit code and output of one command."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


class Cli:
    """Runs the ``nativekit`` command in a subprocess with NATIVEKIT_* variables."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    async def __call__(self, *args: str, **env: str) -> Ran:
        """Run ``nativekit ARGS`` with the fixture's variables plus ``env``."""
        variables = {k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_")}
        variables.update(self.env)
        variables.update(env)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nativekit",
            *args,
            env=variables,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return Ran(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command, run in an empty directory (no .env) with NATIVEKIT_ENVIRONMENT=test."""
    return Cli({"NATIVEKIT_ENVIRONMENT": "test"}, tmp_path)
