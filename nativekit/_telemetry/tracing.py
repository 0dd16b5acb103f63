"""OpenTelemetry tracing, configured from the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` selects ``none`` (the default when unset, so a service
never blocks on a collector nobody runs), ``console`` or ``otlp`` (OTLP/HTTP protobuf
batched by the SDK's ``BatchSpanProcessor`` and encoded by nativekit's own exporter:
:mod:`nativekit._telemetry.otlp`). ``OTEL_SDK_DISABLED=true`` turns tracing off. If the
application already installed a tracer provider (for example with
``opentelemetry-instrument``) nativekit uses it as it is.

The provider nativekit installs (:class:`~nativekit._telemetry.lean.LeanTracerProvider`)
makes the spans the SDK would not record itself, at a fraction of the SDK's cost:
every span while no span processor is attached (the default ``none`` exporter), and
the spans the sampler drops otherwise.

This module imports OpenTelemetry; ``import nativekit`` does not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from nativekit._telemetry.lean import LeanTracerProvider
from nativekit.errors import ConfigError

__all__ = [
    "INSTRUMENTATION",
    "LeanTracerProvider",
    "configure_tracing",
    "flush_tracing",
    "get_tracer",
    "span",
]

INSTRUMENTATION = "nativekit"


def configure_tracing(service: str) -> trace.TracerProvider | None:
    """Install a tracer provider for ``service`` unless one is installed; None if disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current
    attributes: dict[str, Any] = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service
    provider = LeanTracerProvider(resource=Resource.create(attributes))
    for name in _exporter_names():
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(_processor(name, exporter))
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def flush_tracing(timeout_millis: int = 10_000) -> bool:
    """Export the spans the installed provider's processors still hold (a batch processor
    exports only every few seconds), waiting at most ``timeout_millis``; True when done.

    A service calls it when it stops: spans ended since the last batch would otherwise
    be lost with the process."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    return True if flush is None else bool(flush(timeout_millis))


def _processor(name: str, exporter: SpanExporter) -> SpanProcessor:
    """Console: each span at its end; any other exporter: the SDK's batch processor."""
    if name == "console":
        return SimpleSpanProcessor(exporter)
    return BatchSpanProcessor(exporter)


def _exporter_names() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def _exporter(name: str) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from nativekit._telemetry.otlp import otlp_exporter

        try:
            return otlp_exporter()
        except ImportError:  # the SDK's exporter, for configuration nativekit's does not cover
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp with TLS client certificates, a CA file, deflate or "
                "a credential provider needs the SDK's OTLP exporter: "
                "pip install 'nativekit[otlp]'."
            ) from None
    raise ConfigError(
        f"OTEL_TRACES_EXPORTER={name!r} is not supported; expected 'none', 'console' or 'otlp'."
    )


_tracer: tuple[Any, trace.Tracer | None] = (None, None)


def get_tracer() -> trace.Tracer:
    """The nativekit tracer of the installed provider (one per provider)."""
    global _tracer
    provider = trace.get_tracer_provider()
    found = _tracer[1]
    if _tracer[0] is not provider or found is None:
        found = trace.get_tracer(INSTRUMENTATION)
        if not isinstance(provider, trace.ProxyTracerProvider):  # proxies resolve later
            _tracer = (provider, found)
    return found


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """Start a span as a child of the current one (request, message or saga step).

    Example::

        with span("pricing.lookup", sku=sku):
            ...
    """
    with get_tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current
