"""Serve one shop service with its spans appended as JSON lines to a file.

python tests/shop/traced.py SERVICE PORT SPANS_FILE
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO

import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

#: Seconds an idle connection stays open. The tests' httpx clients reuse one for up to 5 s
#: from when they read its last response; uvicorn's default, also 5 s, counts from when
#: it sent it. On a loaded machine a client reads responses seconds late and then sends
#: on connections the server is closing: "Server disconnected without sending a response"
#: or a reset (seen: 80 connections closed idle while the test process read no response
#: for 10 s). The server's idle timeout must outlast the client's, as behind any proxy.
KEEP_ALIVE = 60


class JsonLinesExporter(SpanExporter):
    """One line per span: name, service, trace and span ids, parent id, start and end
    times, attributes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            line = {
                "name": span.name,
                "service": span.resource.attributes.get("service.name"),
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "start": span.start_time,  # ns since the epoch: orders events across processes
                "end": span.end_time,
                "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
            }
            self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.out.close()


def main(service: str, port: str, path: str) -> None:
    """Install the exporter, then serve ``examples.shop.<service>:app``."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = JsonLinesExporter(open(path, "a"))  # noqa: SIM115 - closed by shutdown()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    trace.set_tracer_provider(provider)
    uvicorn.run(f"examples.shop.{service}:app", host="127.0.0.1", port=int(port), access_log=False,
                timeout_keep_alive=KEEP_ALIVE)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:4])
