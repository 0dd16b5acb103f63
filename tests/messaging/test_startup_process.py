"""A real service process serves /livez within 2 s whatever its broker does, and turns
ready once its consumer joined."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.testing.servers import free_port
from tests.messaging.conftest import kafka_settings, new_topic
from tests.proxy import HoldingProxy

ROOT = Path(__file__).parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.kafka]
GROUP = "startup-test.on_ping"
CHECK = "consumer:startup-test:on_ping"


def start(
    processes: list[subprocess.Popen[bytes]], log: Path, kafka: str, **env: str
) -> tuple[str, float]:
    """Start the consumer app under uvicorn; its base URL and the time it was started."""
    port = free_port()
    variables = {
        **os.environ,
        "NATIVEKIT_KAFKA_URL": kafka,
        "NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "NATIVEKIT_CONSUMER_SESSION_TIMEOUT": "6",
        "NATIVEKIT_HEALTH_CACHE_TTL": "0",
        "NATIVEKIT_TRACING_ENABLED": "false",
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "tests.integration.apps.consumer_app:app"]
    started = time.monotonic()
    with log.open("wb") as out:
        processes.append(
            subprocess.Popen(
                [*command, "--port", str(port)], cwd=ROOT, env=variables, stdout=out, stderr=out
            )
        )
    return f"http://127.0.0.1:{port}", started


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup_seconds(log: Path) -> float:
    """Time the application startup took by the process's own log."""
    stamps = {}
    for line in log.read_text().splitlines():
        event = json.loads(line).get("event") if line.startswith("{") else None
        if event in ("Waiting for application startup.", "Application startup complete."):
            stamps[event] = datetime.fromisoformat(json.loads(line)["timestamp"])
    took = stamps["Application startup complete."] - stamps["Waiting for application startup."]
    return took.total_seconds()


async def assert_live_at_once(
    client: httpx.AsyncClient, process: subprocess.Popen[bytes], log: Path
) -> None:
    """/livez answers after less than 2 s of the process's CPU time, and its startup
    waited for nothing (the application started within 0.5 s by its own log).

    CPU time, not wall time: the test machine may run many times more processes than it
    has cores, and a starved interpreter's imports alone then take seconds.
    """
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/livez")).status_code == 200:
                break
        assert time.monotonic() < deadline, f"never live: {process.pid}, see {log}"
        await asyncio.sleep(0.02)
    cpu = cpu_seconds(process.pid)
    assert cpu < 2.0, f"{cpu:.2f}s of CPU time before /livez answered"
    took = startup_seconds(log)
    assert took < 0.5, f"startup took {took:.3f}s"


async def test_live_at_once_and_joining_while_the_broker_refuses(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """With nothing listening at the broker address the process is live within 2 s,
    and /readyz and /startupz say the consumer is joining, with the error."""
    log = tmp_path / "service.log"
    base, _ = start(processes, log, f"kafka://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        await assert_live_at_once(client, processes[0], log)
        await asyncio.sleep(1.0)  # a failed attempt or two
        ready = await client.get("/readyz")
        startup = await client.get("/startupz")
    assert ready.status_code == 503 and startup.status_code == 503
    [check] = ready.json()["checks"][CHECK]
    assert check["output"].startswith(f"joining consumer group '{GROUP}' for ")
    assert "last error" in check["output"]
    assert startup.json()["checks"][CHECK][0]["status"] == "fail"


async def test_ready_once_a_held_broker_answers(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, kafka_url: str, unique: str
) -> None:
    """Behind a proxy that holds every connection the process is live within 2 s and its
    consumer joining; once the proxy forwards, it joins, turns ready and consumes."""
    topic = await new_topic(kafka_url, f"startup-{unique}", 1)
    host, _, port = kafka_url.partition("://")[2].partition(":")
    log = tmp_path / "service.log"
    async with HoldingProxy((host, int(port))) as proxy:
        base, started = start(
            processes, log, f"kafka://127.0.0.1:{proxy.port}", TEST_TOPIC=topic, HOSTNAME=unique
        )
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            await assert_live_at_once(client, processes[0], log)
            await asyncio.sleep(0.5)
            held = await client.get("/readyz")
            assert held.status_code == 503, held.text
            [check] = held.json()["checks"][CHECK]
            assert check["output"].startswith(f"joining consumer group '{GROUP}'")
            assert proxy.accepted >= 1
            proxy.open()
            ready_at = None
            while time.monotonic() - started < 40:
                if (await client.get("/readyz")).status_code == 200:
                    ready_at = time.monotonic() - started
                    break
                await asyncio.sleep(0.1)
            assert ready_at is not None, (await client.get("/readyz")).text
            broker = KafkaBroker(kafka_settings(kafka_url))
            try:
                await broker.send(topic, b'{"n": 1}')
            finally:
                await broker.aclose()
            while (await client.get("/handled")).json()["handled"] < 1:
                assert time.monotonic() - started < 60, f"nothing handled, see {log}"
                await asyncio.sleep(0.1)
