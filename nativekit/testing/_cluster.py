"""A throw-away Redis Cluster for tests: 3 masters, 3 replicas, on free ports.

Built from the same ``redis-server`` (or Valkey) binary as the single test
server, with plain cluster commands (``CLUSTER ADDSLOTSRANGE``, ``MEET``,
``REPLICATE``) spoken over a socket, so neither ``redis-cli`` nor a driver is
needed. A short node timeout makes a killed master's replica take over in a
few seconds.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLUSTER_ENV = "NATIVEKIT_TEST_REDIS_CLUSTER_URL"
SLOTS = 16384


class _Reply(Exception):
    """An error reply of the server."""


def _read(stream: IO[bytes]) -> object:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise _Reply(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read(stream) for _ in range(int(body))]
    raise ConnectionError(f"unexpected reply {line!r}")


def command(port: int, *args: object, timeout: float = 5.0) -> object:
    """Send one command to the server on ``port`` of 127.0.0.1 and return its reply."""
    parts = [str(a).encode() for a in args]
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as stream:
            return _read(stream)


def _answers(port: int, *args: object) -> object:
    try:
        return command(port, *args, timeout=1.0)
    except (OSError, _Reply):
        return None


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL the node (a crash: no shutdown, no save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def role(self) -> str | None:
        """``master`` or ``slave`` as the node says, None if it does not answer."""
        reply = _answers(self.port, "ROLE")
        return str(reply[0]) if isinstance(reply, list) else None


@dataclass
class RedisClusterServer:
    """A Redis Cluster a test run uses; ``nodes`` are set when this run started it."""

    url: str
    nodes: list[ClusterNode] = field(default_factory=list)
    workdir: Path | None = None

    def masters(self) -> list[ClusterNode]:
        """The nodes that are masters now."""
        return [n for n in self.nodes if n.role() == "master"]

    def master_of(self, slot: int) -> ClusterNode:
        """The node that serves ``slot`` now (asked of any live node)."""
        for node in self.nodes:
            reply = _answers(node.port, "CLUSTER", "SLOTS")
            if not isinstance(reply, list):
                continue
            for start, end, master, *_ in reply:
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no live node serves slot {slot}")

    def healthy(self) -> bool:
        """Every live node reports ``cluster_state:ok``."""
        live = [n for n in self.nodes if n.process is None or n.process.poll() is None]
        return all("cluster_state:ok" in str(_answers(n.port, "CLUSTER", "INFO")) for n in live)

    def stop(self) -> None:
        """Stop the nodes this run started and remove their files."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.kill()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _wait(check: object, what: str, timeout: float, nodes: list[ClusterNode], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"Redis Cluster node {node.port} exited: {_tail(log)}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis Cluster: {what} within {timeout:g}s failed: {_tail(log)}")


def _tail(log: Path) -> str:
    return "".join(p.read_text()[-600:] for p in sorted(log.parent.glob("*.log")))


def start_redis_cluster(
    binary: str, ports: list[int], *, masters: int = 3, node_timeout_ms: int = 1000
) -> RedisClusterServer:
    """Start ``len(ports)`` nodes: ``masters`` masters sharing the slots evenly, the rest
    replicas, one per master in turn; return once every node says the cluster is ok."""
    workdir = Path(tempfile.mkdtemp(prefix="nativekit-redis-cluster-"))
    nodes: list[ClusterNode] = []
    cluster = RedisClusterServer(
        "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports[:masters]),
        nodes,
        workdir,
    )
    try:
        for port in ports:
            log = workdir / f"{port}.log"
            args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                    "--appendonly", "no", "--dir", str(workdir),
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                    # a replica takes over however long its link was down (tests kill masters)
                    "--cluster-replica-validity-factor", "0",
                    "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]  # fmt: skip
            with log.open("wb") as out:
                process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
            nodes.append(ClusterNode(port, process))
        log = workdir / f"{ports[0]}.log"
        _wait(
            lambda: all(_answers(n.port, "PING") == "PONG" for n in nodes), "start", 20, nodes, log
        )
        _form(nodes, masters, log)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _form(nodes: list[ClusterNode], masters: int, log: Path) -> None:
    ids = [str(command(n.port, "CLUSTER", "MYID")) for n in nodes]
    for i, node in enumerate(nodes[:masters]):
        start, end = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
        command(node.port, "CLUSTER", "ADDSLOTSRANGE", start, end)
    for node in nodes[1:]:
        command(nodes[0].port, "CLUSTER", "MEET", "127.0.0.1", node.port)

    def everyone_known() -> bool:
        return all(
            str(_answers(n.port, "CLUSTER", "NODES") or "").count("\n") >= len(nodes) for n in nodes
        )

    _wait(everyone_known, "meet", 20, nodes, log)
    for i, node in enumerate(nodes[masters:]):
        command(node.port, "CLUSTER", "REPLICATE", ids[i % masters])

    def formed() -> bool:
        for node in nodes:
            if "cluster_state:ok" not in str(_answers(node.port, "CLUSTER", "INFO")):
                return False
        return all(
            "master_link_status:up" in str(_answers(n.port, "INFO", "replication"))
            for n in nodes[masters:]
        )

    _wait(formed, "forming", 30, nodes, log)
