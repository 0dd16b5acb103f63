"""The shop for the fault suite: its own Redis (append-only) and Tansu broker, each
service reaching them through fault proxies, the three services as uvicorn processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from examples.shop.cluster import Cluster, uvicorn_command
from nativekit.testing.servers import free_port
from tests.faults.infra import DIE_WITH_PARENT, FaultProxy, RedisProcess, TansuProcess

ROOT = Path(__file__).parents[2]
SERVICES = ("orders", "payments", "inventory")
#: The consumers' session timeout: a restarted service must be ready within it + 5 s.
SESSION_TIMEOUT = 6.0
#: Time between SIGTERM and closing the listener, readiness failing meanwhile.
DRAIN_DELAY = 1.0
STATIC = os.environ.get("FAULTS_STATIC", "1") == "1"


class FaultShop:
    """Redis, Tansu, two proxies and the three services; :meth:`close` stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = uuid.uuid4().hex[:8]
        self.redis = RedisProcess()
        self.redis.start()
        self.redis_proxy = FaultProxy(self.redis.port)
        kafka_port = free_port()
        self.kafka_proxy_port = kafka_port
        self.kafka = TansuProcess(advertised_port=kafka_port)
        self.kafka.start()
        self.kafka_proxy = FaultProxy(self.kafka.port, port=kafka_port)
        self.ports = {name: free_port() for name in SERVICES}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "SHOP_"))}
        env.update(
            NATIVEKIT_REDIS_URL=f"redis://127.0.0.1:{self.redis_proxy.port}/0",
            NATIVEKIT_KAFKA_URL=f"kafka://127.0.0.1:{kafka_port}",
            NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER="false",  # Tansu lacks InitProducerId
            NATIVEKIT_ENVIRONMENT="test",
            NATIVEKIT_HTTP_ACCESS_LOG="false",
            NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS=str(DRAIN_DELAY),
            NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS="10",
            NATIVEKIT_CONSUMER_SESSION_TIMEOUT_SECONDS=str(SESSION_TIMEOUT),
            NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS="0.01",
            # every Redis call passes a Python proxy: on a shared 2-core machine at a load
            # of 20+ it alone can take seconds to get a core (2 s is the default)
            NATIVEKIT_OPERATION_TIMEOUT_SECONDS="5",
            NATIVEKIT_SAGA_LEASE_SECONDS="10",
            NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS="0.5",
            NATIVEKIT_TELEMETRY_HEALTH_CACHE_SECONDS="0",
            NATIVEKIT_TELEMETRY_TRACING_ENABLED="false",
            SHOP_KEY_PREFIX=f"faults-{self.tag}",
            SHOP_TOPIC_PREFIX=f"faults-{self.tag}.",
            SHOP_SEED_PRODUCTS="0",
            SHOP_QUOTE_TTL="1",
            SHOP_HTTP_TIMEOUT="3",
            PYTHONPATH=str(ROOT),
        )

        def command(service: str, port: int) -> list[str]:
            return [*DIE_WITH_PARENT, *uvicorn_command(service, port)]

        self.cluster = Cluster(env, ports=self.ports, command=command, log_dir=workdir)
        self.started_at: dict[str, float] = {}

    def url(self, service: str) -> str:
        return self.cluster.url(service)

    def client(self, service: str, timeout: float = 10) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=64)
        return httpx.AsyncClient(base_url=self.url(service), timeout=timeout, limits=limits)

    def start(self, service: str) -> None:
        """Start one service (HOSTNAME as a pod name: its static group membership)."""
        instance = {"HOSTNAME": f"{service}-0"}
        if not STATIC:
            instance = {"NATIVEKIT_CONSUMER_GROUP_INSTANCE_ID": ""}
        self.cluster.start(service, instance)
        self.started_at[service] = time.monotonic()
        pid = self.cluster.processes[service].pid
        for proxy in (self.redis_proxy, self.kafka_proxy):
            proxy.pids = {p: n for p, n in proxy.pids.items() if n != service} | {pid: service}

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)
        self.cluster.wait_ready(120)

    def kill(self, service: str) -> None:
        """SIGKILL one service, as a crash would."""
        self.cluster.kill(service)

    def terminate(self, service: str, timeout: float = 30) -> int:
        """SIGTERM one service and wait for it to exit; its exit code."""
        process = self.cluster.processes.pop(service)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{service} did not stop within {timeout}s of SIGTERM") from None

    def log(self, service: str) -> str:
        return (self.workdir / f"{service}.log").read_text(errors="replace")

    def close(self) -> None:
        """Stop everything this shop started, whatever state it is in."""
        with contextlib.suppress(Exception):
            self.cluster.stop(grace=10)
        for process in list(self.cluster.processes.values()):
            process.kill()
        self.kafka_proxy.close()
        self.redis_proxy.close()
        self.kafka.stop()
        self.redis.remove()
