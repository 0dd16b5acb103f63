"""An ASGI app served by a real uvicorn process on a free port, for tests over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from nativekit.testing.servers import free_port

ROOT = Path(__file__).parents[1]


@contextmanager
def serve(app: str, log: Path, **env: str) -> Iterator[str]:
    """Run ``uvicorn app`` (memory backends unless ``env`` says otherwise) until /livez
    answers; yield its base URL; stop it (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "SHOP_"))}
    clean.update(NATIVEKIT_ENVIRONMENT="test", NATIVEKIT_HTTP_ACCESS_LOG="false", **env)
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=clean, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not start: {log.read_text()}")
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
