"""Reading a message's trace context cheaply gives what the OpenTelemetry propagator gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nativekit._telemetry.propagation import extract_headers, extract_traceparent

VALID = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CASES = [
    [("traceparent", VALID)],
    [("traceparent", VALID), ("tracestate", b"vendor=abc,other=1")],
    [("message-id", b"m"), ("traceparent", VALID.replace(b"-01", b"-00"))],
    [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")],
    [("traceparent", b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")],
    [("traceparent", b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    [("traceparent", VALID.upper())],
    [("traceparent", b" " + VALID)],
    [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
    [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01")],
    [("traceparent", b"garbage")],
    [("tracestate", b"vendor=abc")],
    [
        ("traceparent", b"00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("traceparent", VALID),
    ],
]


def _generic(headers: list[tuple[str, bytes]]) -> trace.SpanContext:
    carrier = {k: v.decode("latin-1") for k, v in headers if k in ("traceparent", "tracestate")}
    return trace.get_current_span(propagate.extract(carrier)).get_span_context()


@pytest.mark.parametrize("headers", CASES)
def test_same_span_context_as_the_propagator(headers: list[tuple[str, bytes]]) -> None:
    """Valid, invalid, other-version and duplicate headers give the propagator's answer."""
    got = extract_headers(headers)
    assert got is not None
    assert trace.get_current_span(got).get_span_context() == _generic(headers)


@pytest.mark.parametrize("headers", [h for h in CASES if len(h) == 1 and h[0][0] == "traceparent"])
def test_http_traceparent_same_as_the_propagator(headers: list[tuple[str, bytes]]) -> None:
    """An HTTP request's traceparent header gives the propagator's span context too."""
    value = headers[0][1].decode("latin-1")
    got = trace.get_current_span(extract_traceparent(value)).get_span_context()
    assert got == _generic(headers)


def test_no_trace_headers_is_none() -> None:
    """A message without trace headers continues no trace."""
    assert extract_headers([("message-id", b"m"), ("baggage", b"k=v")]) is None


class _Custom(TextMapPropagator):
    """A propagator reading its own header: the fast path must step aside for it."""

    def extract(self, carrier, context=None, getter=None):  # type: ignore[no-untyped-def]
        return TraceContextTextMapPropagator().extract(
            {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}
        )

    def inject(self, carrier, context=None, setter=None) -> None:  # type: ignore[no-untyped-def]
        return None

    @property
    def fields(self) -> set[str]:
        return {"x-custom"}


@pytest.fixture
def custom_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([_Custom()]))
    yield
    propagate.set_global_textmap(before)


def test_other_propagators_are_asked(custom_propagator: None) -> None:
    """With a propagator of other fields installed, its answer counts, not the W3C parse."""
    got = extract_headers([("traceparent", VALID)])
    assert got is not None
    assert trace.get_current_span(got).get_span_context().trace_id == int("1" * 32, 16)
