"""Tracing spans and structured logs for requests."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nativekit import ConfigError, Service, Settings
from nativekit._telemetry.logging import configure_logging
from nativekit._telemetry.tracing import _exporter, configure_tracing, span
from nativekit.testing import capture_logs, serve


def make_service() -> Service:
    svc = Service("traced", settings=Settings(_env_file=None))

    @svc.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        with span("pricing.lookup", sku=str(item_id)):
            return {"id": item_id}

    @svc.get("/fail")
    async def fail() -> None:
        raise ValueError("nope")

    return svc


async def test_server_span_follows_semantic_conventions(spans: InMemorySpanExporter) -> None:
    """One SERVER span per request named 'METHOD route' with http.* attributes."""
    async with serve(make_service()) as client:
        await client.get("/items/3")
    finished = {s.name: s for s in spans.get_finished_spans()}
    server = finished["GET /items/{item_id}"]
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/items/{item_id}"
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/items/3"
    child = finished["pricing.lookup"]
    assert child.parent is not None and child.parent.span_id == server.context.span_id


async def test_incoming_traceparent_is_continued(spans: InMemorySpanExporter) -> None:
    """A W3C traceparent header makes the request span part of the caller's trace."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with serve(make_service()) as client:
        await client.get("/items/1", headers={"traceparent": parent})
    server = next(s for s in spans.get_finished_spans() if s.name.startswith("GET"))
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_errors_mark_the_span(spans: InMemorySpanExporter) -> None:
    """An unhandled exception sets ERROR status and records the exception on the span."""
    async with serve(make_service()) as client:
        assert (await client.get("/fail")).status_code == 500
    server = next(s for s in spans.get_finished_spans() if s.name == "GET /fail")
    assert server.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in server.events)


async def test_probes_are_not_traced_or_logged(spans: InMemorySpanExporter) -> None:
    """Probe paths produce no span and no access log line by default."""
    with capture_logs() as logs:
        async with serve(make_service()) as client:
            await client.get("/livez")
            await client.get("/readyz")
    assert spans.get_finished_spans() == ()
    assert [e for e in logs if e["event"] == "http.request"] == []


async def test_one_access_line_per_request_with_trace_and_request_id() -> None:
    """Each request logs one http.request line with route, status, duration and ids."""
    with capture_logs() as logs:
        async with serve(make_service()) as client:
            r = await client.get("/items/9", headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    lines = [e for e in logs if e["event"] == "http.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["route"] == "/items/{item_id}" and line["status"] == 200
    assert line["method"] == "GET" and line["duration_ms"] >= 0
    assert line["request_id"] == "req-123"
    assert line["service"] == "traced"
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16


def test_credentials_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """Authorization headers, cookies and passwords in URLs never reach the output."""
    configure_logging(
        Settings(_env_file=None, telemetry={"log_format": "json"}), "redact", force=True
    )
    import structlog

    with capture_logs() as logs:
        structlog.get_logger().info(
            "client.call",
            authorization="Bearer abc.def",
            headers={"Cookie": "session=42", "accept": "json"},
            url="redis://admin:hunter2@cache:6379/0",
        )
        logging.getLogger("thirdparty").warning("connecting to amqp://u:topsecret@mq/")
    rendered = capsys.readouterr().out
    assert "hunter2" not in rendered and "topsecret" not in rendered
    assert "abc.def" not in rendered and "session=42" not in rendered
    assert logs[0]["url"] == "redis://admin:***@cache:6379/0"
    assert logs[0]["authorization"] == "[REDACTED]"
    assert logs[0]["headers"] == {"Cookie": "[REDACTED]", "accept": "json"}


def test_stdlib_logs_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Logs from stdlib loggers (uvicorn, aiokafka) come out as JSON with level and service."""
    configure_logging(
        Settings(_env_file=None, telemetry={"log_format": "json"}), "stdlib-json", force=True
    )
    logging.getLogger("uvicorn.error").info("Started server process")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "Started server process"
    assert line["level"] == "info" and line["service"] == "stdlib-json"
    assert "timestamp" in line


def test_tracing_exporter_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_EXPORTER accepts none and console; unknown names are a clear error."""
    assert _exporter("none") is None
    assert type(_exporter("console")).__name__ == "ConsoleSpanExporter"
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        _exporter("zipkin")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_tracing("x") is None
