"""Run the shop as processes against real Redis and Kafka (``make shop-cluster``).

    python -m examples.shop.cluster          # orders :8001, payments :8002, inventory :8003
    python -m examples.shop.cluster --replicas 3
        # orders-1..3, payments-1..2, inventory-1..2 on free ports, on a Redis Cluster
        # (started unless NATIVEKIT_REDIS_URL is set) and topics of 6 partitions

Uses NATIVEKIT_REDIS_URL / NATIVEKIT_KAFKA_URL when set, else a Redis on
127.0.0.1:6379, else starts Redis and a Tansu broker (and stops them at the end).
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

PORTS = {"orders": 8001, "payments": 8002, "inventory": 8003}
SERVICES = tuple(PORTS)


def service_of(instance: str) -> str:
    """The service an instance runs: ``orders-2`` runs ``orders``."""
    base, _, number = instance.rpartition("-")
    return base if base in SERVICES and number.isdigit() else instance


def replica_ports(orders: int, participants: int) -> dict[str, int]:
    """Free ports for ``orders`` replicas of orders and ``participants`` replicas each of
    payments and inventory, named ``<service>-<n>``."""
    from nativekit.testing.servers import free_port

    counts = {"orders": orders, "payments": participants, "inventory": participants}
    return {f"{s}-{n}": free_port() for s, count in counts.items() for n in range(1, count + 1)}


def uvicorn_command(service: str, port: int) -> list[str]:
    """The command that serves one shop service."""
    return [sys.executable, "-m", "uvicorn", f"examples.shop.{service}:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip


def _number(instance: str) -> int:
    number = instance.rpartition("-")[2]
    return int(number) if number.isdigit() else 1


class Cluster:
    """The three services as child processes; ``kill``/``start`` one to test crashes."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        ports: Mapping[str, int] = PORTS,
        command: Callable[[str, int], list[str]] = uvicorn_command,
        log_dir: Path | None = None,
    ) -> None:
        self.ports = dict(ports)
        self.command = command
        self.log_dir = log_dir
        self.env = dict(env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def url(self, service: str) -> str:
        """Base URL of a service."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def peer(self, instance: str, service: str) -> str:
        """Base URL of the ``service`` replica that ``instance`` calls: the only one, or the
        one of the same number modulo their count (orders-3 calls payments-1 of two)."""
        if service in self.ports:
            return self.url(service)
        peers = sorted((n for n in self.ports if service_of(n) == service), key=_number)
        return self.url(peers[(_number(instance) - 1) % len(peers)])

    def start(self, service: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Start one service or replica (``orders-2``), not waiting for it."""
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = (self.log_dir / f"{service}.log").open("ab")
            self._logs.append(out)
        peers = {
            "SHOP_PAYMENTS_URL": self.peer(service, "payments"),
            "SHOP_INVENTORY_URL": self.peer(service, "inventory"),
        }
        self.processes[service] = subprocess.Popen(
            self.command(service_of(service), self.ports[service]),
            env={**self.env, **peers, **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every running service answers /readyz with 200."""
        deadline = time.monotonic() + timeout
        for service, process in self.processes.items():
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{service} exited with {process.returncode}")
                try:
                    with urllib.request.urlopen(self.url(service) + "/readyz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not ready after {timeout:g}s")
                time.sleep(0.1)

    def kill(self, service: str) -> None:
        """SIGKILL one service, as a crash would."""
        process = self.processes.pop(service)
        process.kill()
        process.wait()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every service (they drain), SIGKILL what is still running after ``grace``."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        for log in self._logs:
            log.close()


def create_topics(kafka_url: str, topics: list[str], partitions: int) -> None:
    """Create the shop's topics with ``partitions`` partitions (a replica each at most)."""
    import asyncio

    from nativekit import Settings
    from nativekit.backends.kafka import KafkaBroker

    async def create() -> None:
        broker = KafkaBroker(Settings(kafka={"url": kafka_url, "idempotent_producer": False}))
        try:
            await broker.create_topics(dict.fromkeys(topics, partitions))
        finally:
            await broker.aclose()

    asyncio.run(create())


def shop_topics(env: Mapping[str, str], orders_service: str = "orders") -> list[str]:
    """Every topic the shop uses: events, inventory commands, orders' replies."""
    prefix = env.get("SHOP_TOPIC_PREFIX", "shop.")
    names = ("orders", "payments", "inventory", "inventory.commands")
    return [f"{prefix}{name}" for name in names] + [f"{orders_service}.replies"]


def start_replicas(cluster: Cluster, suffix: str = "") -> None:
    """Start every instance of ``cluster``: replicas of one service share its name (saga
    keys, consumer groups), each has its own host name (static group membership)."""
    for instance in cluster.ports:
        cluster.start(
            instance,
            {
                "NATIVEKIT_SERVICE_NAME": service_of(instance) + suffix,
                "HOSTNAME": instance + suffix,
            },
        )


def main(argv: list[str] | None = None) -> int:
    """Start what is missing, run the services until Ctrl-C, stop everything."""
    import argparse

    from nativekit.testing import servers

    parser = argparse.ArgumentParser(description="The shop as processes on Redis and Kafka.")
    parser.add_argument("--replicas", type=int, default=1, help="orders replicas (default 1)")
    args = parser.parse_args(argv)
    replicated = args.replicas > 1
    with ExitStack() as stack:
        env = dict(os.environ)
        # prompt command replies
        env.setdefault("NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS", "0.01")
        if not env.get("NATIVEKIT_REDIS_URL"):
            redis: Any = servers.start_redis_cluster() if replicated else servers.start_redis()
            stack.callback(redis.stop)
            env["NATIVEKIT_REDIS_URL"] = redis.url
        if env.get("NATIVEKIT_DATABASE_URL"):  # a demo: create nativekit's tables at startup
            env.setdefault("NATIVEKIT_DATABASE_MIGRATE_ON_START", "true")
        if not env.get("NATIVEKIT_KAFKA_URL"):
            kafka = servers.start_kafka()
            stack.callback(kafka.stop)
            env["NATIVEKIT_KAFKA_URL"] = kafka.url
            env["NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # Tansu lacks InitProducerId
        if replicated:
            partitions = max(6, 2 * args.replicas)
            create_topics(env["NATIVEKIT_KAFKA_URL"], shop_topics(env), partitions)
            cluster = Cluster(env, ports=replica_ports(args.replicas, 2))
        else:
            cluster = Cluster(env)
        stack.callback(cluster.stop)
        start_replicas(cluster)
        cluster.wait_ready(120)
        print(f"redis={env['NATIVEKIT_REDIS_URL']} kafka={env['NATIVEKIT_KAFKA_URL']}")
        if env.get("SHOP_DATABASE_URL"):  # inventory: stock and nativekit state in PostgreSQL
            print("inventory on PostgreSQL (SHOP_DATABASE_URL)")
        if env.get("NATIVEKIT_DATABASE_URL"):  # sagas, outbox, DONE marks of the others
            print("orders' and payments' nativekit state on PostgreSQL (NATIVEKIT_DATABASE_URL)")
        for instance in cluster.ports:
            print(f"{instance:12} {cluster.url(instance)}")
        print("Ctrl-C stops the shop.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.poll() is None for p in cluster.processes.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
