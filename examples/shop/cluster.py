"""Run the shop as three processes against real Redis and Kafka (``make shop-cluster``).

    python -m examples.shop.cluster          # orders :8001, payments :8002, inventory :8003

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
from typing import IO

PORTS = {"orders": 8001, "payments": 8002, "inventory": 8003}


def uvicorn_command(service: str, port: int) -> list[str]:
    """The command that serves one shop service."""
    return [sys.executable, "-m", "uvicorn", f"examples.shop.{service}:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip


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
        self.env = {
            **env,
            "SHOP_PAYMENTS_URL": self.url("payments"),
            "SHOP_INVENTORY_URL": self.url("inventory"),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def url(self, service: str) -> str:
        """Base URL of a service."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Start one service (not waiting for it)."""
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = (self.log_dir / f"{service}.log").open("ab")
            self._logs.append(out)
        self.processes[service] = subprocess.Popen(
            self.command(service, self.ports[service]),
            env={**self.env, **(extra_env or {})},
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


def main() -> int:
    """Start what is missing, run the three services until Ctrl-C, stop everything."""
    from nativekit.testing import servers

    with ExitStack() as stack:
        env = dict(os.environ)
        # prompt command replies
        env.setdefault("NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS", "0.01")
        if not env.get("NATIVEKIT_REDIS_URL"):
            redis = servers.start_redis()
            stack.callback(redis.stop)
            env["NATIVEKIT_REDIS_URL"] = redis.url
        if not env.get("NATIVEKIT_KAFKA_URL"):
            kafka = servers.start_kafka()
            stack.callback(kafka.stop)
            env["NATIVEKIT_KAFKA_URL"] = kafka.url
            env["NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # Tansu lacks InitProducerId
        cluster = Cluster(env)
        stack.callback(cluster.stop)
        for service in PORTS:
            cluster.start(service)
        cluster.wait_ready()
        print(f"redis={env['NATIVEKIT_REDIS_URL']} kafka={env['NATIVEKIT_KAFKA_URL']}")
        if env.get("SHOP_DATABASE_URL"):  # inventory: stock and nativekit state in PostgreSQL
            print("inventory on PostgreSQL (SHOP_DATABASE_URL)")
        for service in PORTS:
            print(f"{service:9} {cluster.url(service)}")
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
