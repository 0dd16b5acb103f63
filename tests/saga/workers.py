"""Worker processes of the SIGKILL tests: start a worker script of this folder, read its
``READY``/``DONE`` lines, and let a last (surviving) worker finish every saga."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    """Start ``script`` (a worker of this folder) with ``args``; its stdout is piped."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / script), *args, stdout=asyncio.subprocess.PIPE, env=env
    )


async def read_line(proc: asyncio.subprocess.Process, prefix: str, deadline: float) -> str | None:
    """The first output line starting with ``prefix`` (None if it exits or times out first)."""
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(deadline):
            while line := await proc.stdout.readline():
                if line.decode().startswith(prefix):
                    return line.decode().strip()
    except TimeoutError:
        return None
    return None


async def survivor_finishes(script: str, *args: str, within: float) -> bool:
    """Run a last worker until it prints ``DONE`` (True) or ``within`` seconds pass."""
    survivor = await spawn(script, *args)
    try:
        return await read_line(survivor, "DONE", within) is not None
    finally:
        if survivor.returncode is None:
            survivor.kill()
        await survivor.wait()
