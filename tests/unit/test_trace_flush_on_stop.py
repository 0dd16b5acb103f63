"""Spans still queued in the batch processor reach the collector when uvicorn stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests import otlp_collector
from tests.otlp_collector import Collector
from tests.served import serve


@pytest.fixture
def collector() -> Iterator[str]:
    with otlp_collector.collector() as url:
        yield url


@pytest.mark.parametrize("app", ["app", "group"])
def test_a_span_recorded_before_the_first_batch_is_exported_on_sigterm(
    collector: str, tmp_path: Path, app: str
) -> None:
    """One request, then SIGTERM long before the batch processor's first export (an hour
    away): the request's server span arrives at the collector before the process exits."""
    log = tmp_path / "uvicorn.log"
    with serve(
        f"tests.unit.flush_app:{app}",
        log,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector,
        OTEL_BSP_SCHEDULE_DELAY="3600000",
        OTEL_TRACES_SAMPLER="always_on",
    ) as url:
        assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
        assert Collector.bodies == []  # nothing exported while it runs
    # serve() sent SIGTERM and waited for the process to exit
    names = [
        span.name
        for request in (ExportTraceServiceRequest.FromString(b) for _, b in Collector.bodies)
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert "GET /ping" in names, log.read_text()
