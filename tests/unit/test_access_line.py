"""The access line's shortcut writes what the structlog pipeline writes, or leaves it to it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider

import nativekit
from nativekit._telemetry import logging as nklogging
from nativekit._telemetry.access import AccessLog

STAMP = re.compile(r'"timestamp": "[^"]+"')


@pytest.fixture
def json_logs() -> Iterator[None]:
    settings = nativekit.Settings(environment="production", telemetry={"log_format": "json"})
    nklogging.configure_logging(settings, "orders", force=True)
    yield
    nklogging.reset_logging()


def _both(
    capsys: pytest.CaptureFixture[str],
    path: str,
    request_id: str = "r-1",
    span_context: trace.SpanContext | None = None,
) -> tuple[bool, str, str]:
    """(shortcut taken, its line, the pipeline's line) for one request, timestamps blanked."""
    token = nklogging.log_context.set({"request_id": request_id, "service": "orders"})
    try:
        taken = AccessLog("orders").write(
            "GET", "/items/{id}", path, 200, 1.25, request_id, span_context
        )
        fast = capsys.readouterr().out
        nklogging.get_logger(component="http").info(
            "http.request", method="GET", route="/items/{id}", path=path, status=200,
            duration_ms=1.25,
        )  # fmt: skip
        slow = capsys.readouterr().out
    finally:
        nklogging.log_context.reset(token)
    return taken, STAMP.sub('"timestamp": ""', fast), STAMP.sub('"timestamp": ""', slow)


def test_line_is_the_pipelines_line_in_and_out_of_a_span(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same bytes (timestamp aside) with and without a current span, odd characters too."""
    taken, fast, slow = _both(capsys, '/items/"ü"\\x')
    assert taken and fast == slow and json.loads(fast)["path"] == '/items/"ü"\\x'
    span = TracerProvider().get_tracer("t").start_span("s")
    token = context.attach(trace.set_span_in_context(span))
    try:
        taken, fast, slow = _both(capsys, "/items/1")
    finally:
        context.detach(token)
    assert taken and fast == slow
    assert json.loads(fast)["trace_id"] == format(span.get_span_context().trace_id, "032x")
    # the middleware hands the current span's context over instead of a lookup
    for current in (span, trace.INVALID_SPAN):
        token = context.attach(trace.set_span_in_context(current))
        try:
            taken, fast, slow = _both(capsys, "/items/2", span_context=current.get_span_context())
        finally:
            context.detach(token)
        assert taken and fast == slow
        assert ("trace_id" in json.loads(fast)) is (current is span)


def test_redactable_values_and_bound_context_go_through_the_pipeline(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL with a password, or structlog context variables, are left to structlog."""
    taken, fast, slow = _both(capsys, "/go/http://u:secret@host/")
    assert not taken and fast == "" and "secret" not in slow
    with structlog.contextvars.bound_contextvars(tenant="a"):
        taken, fast, slow = _both(capsys, "/items/1")
    assert not taken and json.loads(slow)["tenant"] == "a"


def test_console_format_and_captures_go_through_the_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Console logs and nativekit.testing's capture get every line from structlog."""
    settings = nativekit.Settings(environment="development", telemetry={"log_format": "console"})
    nklogging.configure_logging(settings, "orders", force=True)
    try:
        assert not AccessLog("orders").write("GET", "/", "/", 200, 1.0, "r")
    finally:
        nklogging.reset_logging()
