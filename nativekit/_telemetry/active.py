"""The tracer spans should go to right now, without importing OpenTelemetry early."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


def active_tracer() -> Tracer | None:
    """The nativekit tracer, or None while no tracer provider is installed (spans would be
    no-ops that still cost microseconds per message)."""
    from opentelemetry import trace

    from nativekit._telemetry.tracing import get_tracer

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    return get_tracer()


def current_trace_id() -> str | None:
    """The id of the trace the caller runs in (32 hex digits), or None outside a trace."""
    import sys

    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # nothing traced yet: no trace to be in
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
