"""A real HTTP peer for the client tests: scripted answers over TCP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request the peer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0


@dataclass
class Peer:
    """Answers with ``script`` in order (then ``default``); records what it received."""

    url: str = ""
    script: list[tuple[int, dict[str, str], Any, float]] = field(default_factory=list)
    default: tuple[int, dict[str, str], Any, float] = (200, {}, {"ok": True}, 0.0)
    seen: list[Seen] = field(default_factory=list)

    def then(self, status: int, body: Any = None, *, headers: dict[str, str] | None = None,
             delay: float = 0.0) -> Peer:  # fmt: skip
        """Queue one answer (``delay`` seconds before it)."""
        self.script.append((status, headers or {}, body, delay))
        return self


@contextmanager
def peer_server() -> Iterator[Peer]:
    """A scripted peer at ``peer.url``, stopped on exit."""
    peer = Peer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                peer.seen.append(
                    Seen(self.command, self.path, dict(self.headers), body, self.client_address[1])
                )
                status, headers, payload, delay = (
                    peer.script.pop(0) if peer.script else peer.default
                )
            if delay:
                time.sleep(delay)
            raw = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    peer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
