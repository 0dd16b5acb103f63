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
