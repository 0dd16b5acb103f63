"""A peer process killed and restarted: the client fails with PeerError, then recovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import nativekit
from nativekit.client import AiohttpTransport, PeerError
from nativekit.testing import lifespan
from nativekit.testing.servers import free_port

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def start_peer(port: int) -> subprocess.Popen[bytes]:
    """Run peer_app under uvicorn on ``port`` and wait until it answers."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "peer_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}"},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the peer did not start within 30 s")


@pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
async def test_killed_peer_is_a_peer_error_and_a_restarted_one_is_reached_again(
    engine: str,
) -> None:
    """SIGKILL the peer: pooled connections die, the call is a PeerError naming it; the
    restarted peer on the same port answers the same client."""
    port = free_port()
    peer = start_peer(port)
    svc = nativekit.Service(
        "orders", settings=nativekit.Settings(_env_file=None, telemetry={"tracing_enabled": False})
    )
    client = svc.http_client(
        f"http://127.0.0.1:{port}",
        peer="inventory",
        retries=1,
        backoff=0.01,
        breaker_failures=100,
        **({"transport": AiohttpTransport()} if engine == "aiohttp" else {}),
    )
    try:
        async with lifespan(svc):
            assert (await client.get("/inventory/products/mug")).json() == {"sku": "mug"}
            peer.send_signal(signal.SIGKILL)
            peer.wait(timeout=10)
            with pytest.raises(PeerError, match="inventory did not answer GET"):
                await client.get("/inventory/products/mug")
            peer = start_peer(port)
            assert (await client.get("/inventory/products/tee")).json() == {"sku": "tee"}
    finally:
        peer.kill()
        peer.wait(timeout=10)
