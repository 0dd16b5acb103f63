"""The ``http.request`` access line, written as the JSON log pipeline writes it, for less.

Through structlog an access line costs more CPU than a bare Starlette request:
the bound logger's call, seven processors, ``json.dumps`` of a dozen keys. Most of
the line is the same for every request to a route (``component``, ``method``,
``route``, ``event``, ``service``, ``level``), so :class:`AccessLog` keeps that text
per route and fills in the rest: path, status, duration, request id, timestamp,
trace and span ids. The line is byte for byte what the pipeline writes
(``tests/unit/test_access_line.py`` compares them), and whenever it could differ
(console format, captured logs, context variables bound with structlog,
a pipeline someone else configured, a level above info, an ``@`` in a value,
which redaction might touch) the line goes through structlog as before.
"""

from __future__ import annotations

import sys
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import structlog

from nativekit._telemetry import logging as _logging

__all__ = ["AccessLog"]

_INFO = 20


class AccessLog:
    """Writes one service's access lines; ``write`` returns False when it did not."""

    __slots__ = ("component", "heads", "service", "tail")

    def __init__(self, service: str, component: str = "http") -> None:
        self.service = service
        self.component = component
        #: (method, route) -> the line's text up to the path's value
        self.heads: dict[tuple[str, str], str] = {}
        #: the text between the request id's value and the timestamp's
        self.tail = f', "service": {_quote(service)}, "level": "info", "timestamp": "'

    def write(
        self,
        method: str,
        route: str,
        path: str,
        status: int,
        duration_ms: float,
        request_id: str,
        span_context: Any = None,
    ) -> bool:
        """Write the line for one request, or return False: the caller logs it through
        structlog instead. ``span_context`` is the current span's, when the caller has it
        at hand (else it is looked up, as the pipeline does)."""
        configured = _logging._configured
        if (
            configured.get("format") != "json"
            or configured.get("level", _INFO) > _INFO
            or _logging.captures
            or structlog.get_config()["processors"] is not configured.get("processors")
            or structlog.contextvars.get_contextvars()
            or "@" in path
            or "@" in request_id
            or "@" in route
            or "@" in method
        ):
            return False
        head = self.heads.get((method, route))
        if head is None:
            if len(self.heads) > 1000:  # methods are whatever clients send
                self.heads.clear()
            head = self.heads[(method, route)] = (
                f'{{"component": {_quote(self.component)}, "method": {_quote(method)}, '
                f'"route": {_quote(route)}, "path": '
            )
        stamp = _logging.timestamp_text()
        if span_context is None:
            ids = _logging.trace_ids()
            trace = f', "trace_id": "{ids[0]}", "span_id": "{ids[1]}"}}\n' if ids else "}\n"
        elif span_context.is_valid:
            # bytes.hex is the same text as format(..., "032x") at a fraction of its cost
            trace = (
                f', "trace_id": "{span_context.trace_id.to_bytes(16, "big").hex()}", '
                f'"span_id": "{span_context.span_id.to_bytes(8, "big").hex()}"}}\n'
            )
        else:
            trace = "}\n"
        line = (
            f'{head}{_quote(path)}, "status": {int(status)}, '
            f'"duration_ms": {float(duration_ms)!r}, '
            f'"event": "http.request", "request_id": {_quote(request_id)}'
            f'{self.tail}{stamp}"{trace}'
        )
        out: Any = sys.stdout
        out.write(line)
        out.flush()
        return True
