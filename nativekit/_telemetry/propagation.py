"""Reading the W3C trace context of a message's headers, at a fraction of the generic cost.

A consumer continues the trace of every message it handles. The generic path
(``opentelemetry.propagate.extract``) decodes the headers into a dict, runs the
composite propagator, and each propagator reads its header through a getter and
parses ``traceparent`` with a regular expression: on a topic whose events carry a
``traceparent`` (every event ``svc.publish`` sends while tracing is on) that costs
about as much as the consume span itself.

Only ``traceparent`` and ``tracestate`` are read from messages. When the installed
propagator reads no fields but the W3C ones (``traceparent``, ``tracestate``,
``baggage``: the default ``tracecontext,baggage``, or a subset), the result is what
the trace-context propagator would return, so a ``version 00`` traceparent is parsed
here directly with the public API (``SpanContext``, ``NonRecordingSpan``,
``set_span_in_context``). Any other case (other propagators configured, another
version, a header that does not parse) goes through ``propagate.extract`` unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.span import TraceState

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_W3C = frozenset({TRACEPARENT, TRACESTATE, "baggage"})
_VERSION_00 = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def extract_headers(headers: Sequence[tuple[str, bytes]]) -> Context | None:
    """The trace context carried by Kafka-style ``(name, bytes)`` headers (None when they
    carry none); the last header of a name counts."""
    traceparent = tracestate = None
    for name, value in headers:
        if name == TRACEPARENT:
            traceparent = value
        elif name == TRACESTATE:
            tracestate = value
    if traceparent is None and tracestate is None:
        return None
    if traceparent is not None and _w3c_only(propagate.get_global_textmap()):
        fast = _parse(traceparent, tracestate)
        if fast is not None:
            return fast
    carrier = {k: v.decode("latin-1") for k, v in headers if k in (TRACEPARENT, TRACESTATE)}
    return propagate.extract(carrier)


def extract_traceparent(traceparent: str) -> Context:
    """The trace context of an HTTP request's ``traceparent`` header (as
    ``propagate.extract({"traceparent": traceparent})`` gives it)."""
    if _w3c_only(propagate.get_global_textmap()):
        fast = _parse(traceparent.encode("latin-1", "replace"), None)
        if fast is not None:
            return fast
    return propagate.extract({"traceparent": traceparent})


#: (the global propagator last seen, whether it reads W3C fields only): a composite
#: propagator builds its ``fields`` set anew on every read
_seen: tuple[object, bool] = (None, False)


def _w3c_only(propagator: TextMapPropagator) -> bool:
    global _seen
    if _seen[0] is not propagator:
        _seen = (propagator, propagator.fields <= _W3C)
    return _seen[1]


def _parse(traceparent: bytes, tracestate: bytes | None) -> Context | None:
    """A ``version 00`` traceparent as the trace-context propagator reads it; None when
    the header needs the generic path (including invalid ones: it decides those)."""
    match = _VERSION_00.fullmatch(traceparent)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = None
    if tracestate is not None:
        if len(tracestate) > 8192:  # the propagator drops longer ones with a warning
            return None
        state = TraceState.from_header([tracestate.decode("latin-1")])
    span_context = trace.SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags, 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())
