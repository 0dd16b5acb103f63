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


def _request_spans(count: int) -> list[Any]:
    """Request-like spans: a route, a path per span, statuses, a bool and a float."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("nativekit")
    for n in range(count):
        span = tracer.start_span("GET", kind=trace.SpanKind.SERVER)
        span.update_name("GET /items/{item_id}")
        span.set_attributes(
            {
                "http.request.method": "GET",
                "url.path": f"/items/{n}",
                "http.route": "/items/{item_id}",
                "http.response.status_code": (200, 404, 500)[n % 3],
                "big": 1 << 62 | n,
                "cached": n % 2 == 0,
                "ratio": n / 7,
            }
        )
        span.end()
    return list(memory.get_finished_spans())


def test_repeated_and_many_distinct_values_encode_as_the_sdk_does() -> None:
    """Encoding again (the values now cached) and past the per-key value cache (a path
    per span) still gives the SDK encoder's message, span for span."""
    spans = _request_spans(600)
    theirs = ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    for _ in range(2):
        assert ExportTraceServiceRequest.FromString(encode_spans(spans)) == theirs


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


def test_what_the_receiver_gets_decodes_to_the_sdk_encoders_message(collector: str) -> None:
    """The body posted to a local OTLP receiver, decoded with opentelemetry-proto, is the
    message the SDK's own encoder makes of the same spans."""
    spans = _spans() + _request_spans(20)
    exporter = LeanOTLPSpanExporter(collector)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    ((_, body),) = Collector.bodies
    received = ExportTraceServiceRequest.FromString(body)
    assert received == ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    names = [s.name for r in received.resource_spans for sc in r.scope_spans for s in sc.spans]
    assert names.count("GET /items/{item_id}") == 20


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
