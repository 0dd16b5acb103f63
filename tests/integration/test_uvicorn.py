"""A real uvicorn process: graceful shutdown on SIGTERM and multi-worker metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nativekit.testing.servers import free_port, port_open

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def start_uvicorn(
    port: int, log: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.integration.apps.slow_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"uvicorn did not start: {log.read_text()}")
        time.sleep(0.05)
    return process


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_sigterm_drains_in_flight_requests(
    stop_after: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """On SIGTERM readiness turns 503 at once and a slow request in flight still completes."""
    port = free_port()
    env = {"NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS": "1.0", "NATIVEKIT_TELEMETRY_LOG_FORMAT": "json"}
    log = tmp_path / "uvicorn.log"
    process = start_uvicorn(port, log, env=env)
    stop_after.append(process)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await _wait_ready(client)
        slow = asyncio.create_task(client.get("/slow", params={"seconds": 2.0}))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=base, timeout=5) as fresh:
            ready = await fresh.get("/readyz")
            alive = await fresh.get("/livez")
        response = await slow
    assert ready.status_code == 503 and ready.json()["output"] == "draining"
    assert alive.status_code == 200
    assert response.status_code == 200 and response.json() == {"slept": 2.0}
    process.wait(timeout=15)
    output = log.read_text()
    assert process.returncode in (0, -signal.SIGTERM), output
    events = [line for line in output.splitlines() if '"event"' in line]
    assert any('"service.draining"' in e for e in events)
    assert any('"service.stopped"' in e for e in events)
    assert "Traceback" not in output


async def test_multiprocess_metrics_sum_over_workers(
    stop_after: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR and two workers, /metrics counts every worker's requests."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    process = start_uvicorn(port, tmp_path / "uvicorn.log", "--workers", "2", env=env)
    stop_after.append(process)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        await _wait_ready(client)
        for n in range(40):  # new connections spread over both workers
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as one:
                assert (await one.get(f"/hit/{n}")).status_code == 200
        text = (await client.get("/metrics")).text
    total = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "http_requests_total" and s.labels.get("route") == "/hit/{n}"
    )
    assert total == 40
    pids = {p.name.split("_")[-1].removesuffix(".db") for p in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, "both workers served requests"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)


async def _wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("service never became ready")
