"""nativekit's OTLP/HTTP exporter: the SDK encoder's message, sent, retried, configured."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nativekit._telemetry.otlp import LeanOTLPSpanExporter, otlp_exporter
from nativekit._telemetry.otlp_encode import encode_spans
from tests import otlp_collector
from tests.otlp_collector import Collector


def _spans() -> list[Any]:
    """Spans with every field the encoder writes: attributes of each type, events, links,
    statuses, kinds, a remote parent with trace state, two scopes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("nativekit", "1.2", schema_url="https://s/1", attributes={"a": 1})
    attributes = {"i": -3, "f": 1.5, "b": True, "s": "x", "li": [1, 2], "ls": ("a", "b")}
    with tracer.start_as_current_span("parent", attributes=attributes) as parent:
        parent.add_event("event", {"k": "v", "n": 2})
        parent.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
        link = trace.Link(parent.get_span_context(), {"l": False})
        tracer.start_span("child", kind=trace.SpanKind.CLIENT, links=[link]).end()
        try:
            raise ValueError("recorded")
        except ValueError as exc:
            parent.record_exception(exc)
    remote = trace.SpanContext(5, 6, True, trace.TraceFlags(1), trace.TraceState([("k", "v")]))
    context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    tracer.start_span("GET /items/{id}", context=context, kind=trace.SpanKind.SERVER).end()
    other = provider.get_tracer("other")
    for status in (200, 200, 404):
        other.start_span("o", attributes={"http.response.status_code": status}).end()
    return list(memory.get_finished_spans())


def test_encoded_request_is_the_sdk_encoders_message() -> None:
    """The bytes parse to the message the SDK's OTLP encoder builds, field for field."""
    spans = _spans()
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    theirs = ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    assert ours == theirs
    assert len(ours.resource_spans[0].scope_spans) == 2


@pytest.fixture
def collector() -> Iterator[str]:
    with otlp_collector.collector() as url:
        yield url


def test_export_posts_protobuf_with_the_configured_headers(collector: str) -> None:
    """Each batch is one POST of the encoded request, with the headers, on one connection."""
    spans = _spans()
    exporter = LeanOTLPSpanExporter(collector, headers={"X-Tenant": "a"})
    assert exporter.export(spans[:2]) is SpanExportResult.SUCCESS
    assert exporter.export(spans[2:]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert [len(ExportTraceServiceRequest.FromString(b).resource_spans) for _, b in
            Collector.bodies] == [1, 1]  # fmt: skip
    headers = Collector.bodies[0][0]
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-tenant"] == "a"
    assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown


def test_export_retries_unavailable_then_gives_up_on_client_errors(collector: str) -> None:
    """503 is retried (same body); 400 fails the batch without a retry."""
    spans = _spans()
    exporter = LeanOTLPSpanExporter(collector, timeout=5)
    Collector.answers = [503]
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert len(Collector.bodies) == 2 and Collector.bodies[0][1] == Collector.bodies[1][1]
    Collector.answers = [400]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(Collector.bodies) == 3


def test_export_to_a_closed_port_fails_within_the_timeout() -> None:
    """No receiver: the export fails (after retrying within its timeout), never raises."""
    exporter = LeanOTLPSpanExporter("http://127.0.0.1:9/v1/traces", timeout=0.5)
    assert exporter.export(_spans()) is SpanExportResult.FAILURE


def test_gzip_and_endpoint_come_from_the_standard_variables(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/traces; gzip compresses the body."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.removesuffix("/v1/traces") + "/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%20t")
    exporter = otlp_exporter()
    assert isinstance(exporter, LeanOTLPSpanExporter)
    assert exporter.endpoint == collector
    assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    headers, body = Collector.bodies[0]
    assert headers["content-encoding"] == "gzip" and headers["api-key"] == "s t"
    assert ExportTraceServiceRequest.FromString(gzip.decompress(body)).resource_spans


def test_tls_client_certificates_select_the_sdk_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configuration the lean exporter does not cover gets the SDK's exporter."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/nonexistent.pem")
    assert isinstance(otlp_exporter(), OTLPSpanExporter)
