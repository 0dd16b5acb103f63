"""A local OTLP/HTTP trace receiver for tests: records each export, answers as scripted."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Collector(http.server.BaseHTTPRequestHandler):
    """Records (headers, body) of each POST; answers ``answers`` in order, then 200."""

    answers: list[int] = []
    bodies: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).answers.pop(0) if type(self).answers else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def collector() -> Iterator[str]:
    """A fresh :class:`Collector` on a free port; yields its traces URL."""
    Collector.answers, Collector.bodies = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()
