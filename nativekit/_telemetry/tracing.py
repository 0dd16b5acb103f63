"""OpenTelemetry tracing, configured from the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` selects ``none`` (the default when unset, so a service
never blocks on a collector nobody runs), ``console`` or ``otlp`` (OTLP/HTTP protobuf
through the batch span processor, encoded by nativekit's own exporter:
:mod:`nativekit._telemetry.otlp`). ``OTEL_SDK_DISABLED=true`` turns tracing off. If the
application already installed a tracer provider (for example with
``opentelemetry-instrument``) nativekit uses it as it is.

While the provider nativekit installs has no span processor (the default
``none`` exporter), nothing would receive a recorded span, so its tracers make
non-recording spans that still get fresh ids and the sampling flags the SDK
would give them: trace context crosses services and logs carry ``trace_id``
exactly as before, at about a quarter of the cost of a recorded span. Adding a processor
later (``provider.add_span_processor``) makes every tracer record from then on.

This module imports OpenTelemetry; ``import nativekit`` does not.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, StaticSampler

from nativekit.errors import ConfigError

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
            processor = (
                SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)
            )
            provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


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


class LeanTracerProvider(TracerProvider):
    """The SDK provider, recording spans only once a span processor is attached."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: True while no span processor is attached: spans are not recorded.
        self.lean = True

    def add_span_processor(self, span_processor: Any) -> None:
        """Attach a processor (an exporter's): spans are recorded from now on."""
        super().add_span_processor(span_processor)
        self.lean = False

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        """The SDK tracer, behind one that skips recording while :attr:`lean`."""
        return _LeanTracer(super().get_tracer(*args, **kwargs), self)


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_RANDOM = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))  # newer APIs (W3C level 2)


class _LeanTracer(trace.Tracer):
    """An SDK tracer that, while its provider is lean, makes non-recording spans with the
    trace id, span id, flags and trace state the SDK would give the span."""

    def __init__(self, sdk: Any, provider: LeanTracerProvider) -> None:
        self.sdk = sdk
        self.provider = provider
        #: the sampler's fixed answer, when it needs no call: see :func:`_fixed_decision`
        self.fixed = _fixed_decision(sdk.sampler)
        is_random = getattr(sdk.id_generator, "is_trace_id_random", None)
        self.random_ids = bool(_RANDOM and is_random is not None and is_random())

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """A span (recorded by the SDK unless the provider is lean)."""
        if not self.provider.lean:
            return self.sdk.start_span(  # type: ignore[no-any-return]
                name, context, kind, attributes, links, start_time,
                record_exception, set_status_on_exception,
            )  # fmt: skip
        return trace.NonRecordingSpan(self.lean_context(name, context, kind, attributes, links))

    def lean_context(
        self,
        name: str,
        context: context_api.Context | None,
        kind: trace.SpanKind,
        attributes: Any,
        links: Sequence[trace.Link] | None,
    ) -> trace.SpanContext:
        sdk = self.sdk
        parent = trace.get_current_span(context).get_span_context()
        ids = sdk.id_generator
        if parent.is_valid:
            trace_id = parent.trace_id
            random_id = bool(parent.trace_flags & _RANDOM)
        else:
            trace_id = ids.generate_trace_id()
            random_id = self.random_ids
        fixed = self.fixed
        if fixed is None:
            result = sdk.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled, trace_state = result.decision.is_sampled(), result.trace_state
        elif parent.is_valid:  # a static sampler keeps the parent's trace state
            trace_state = parent.trace_state
            sampled = parent.trace_flags.sampled if fixed == "parent" else fixed
        else:
            sampled, trace_state = fixed == "parent" or fixed is True, None
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_id:
            flags = trace.TraceFlags(flags | _RANDOM)
        return trace.SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=trace_state,
        )

    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        """Start a span and make it current for the ``with`` block (or decorated call)."""
        if not self.provider.lean:
            return self.sdk.start_as_current_span(
                name, context, kind, attributes, links, start_time,
                record_exception, set_status_on_exception, end_on_exit,
            )  # fmt: skip
        # Lean now, but a function decorated now may run after a processor is attached:
        # each entry decides again.
        return _LeanScope(
            self,
            (name, context, kind, attributes, links, start_time,
             record_exception, set_status_on_exception, end_on_exit),
        )  # fmt: skip


_PARENT_BASED_ALWAYS_ON: str = DEFAULT_ON.get_description()  # type: ignore[no-untyped-call]


def _fixed_decision(sampler: Any) -> bool | str | None:
    """What ``sampler`` decides without being asked: True or False for ``always_on`` /
    ``always_off``, ``"parent"`` for ``parentbased_always_on`` (the SDK's default: a root
    is sampled, a child follows its parent's flag), None for any other sampler, which is
    then called for every span."""
    if isinstance(sampler, StaticSampler):
        decision: Any = sampler.should_sample(None, 1, "").decision
        return bool(decision.is_sampled())
    if sampler.get_description() == _PARENT_BASED_ALWAYS_ON:
        return "parent"
    return None


class _LeanScope:
    """What ``start_as_current_span`` returns while lean: a context manager making the
    span current, and a decorator (of plain and async functions) entering a new scope
    per call, as the SDK's own return value is."""

    __slots__ = ("args", "exit", "token", "tracer")

    def __init__(self, tracer: _LeanTracer, args: tuple[Any, ...]) -> None:
        self.tracer = tracer
        self.args = args  # name, context, kind, attributes, links, then the SDK's options
        self.exit: Any = None  # the SDK scope's __exit__, when a processor was attached since
        self.token: object = None

    def __enter__(self) -> trace.Span:
        tracer = self.tracer
        if not tracer.provider.lean:
            scope = tracer.sdk.start_as_current_span(*self.args)
            self.exit = scope.__exit__
            return scope.__enter__()  # type: ignore[no-any-return]
        span = trace.NonRecordingSpan(tracer.lean_context(*self.args[:5]))
        self.token = context_api.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, *exc_info: Any) -> bool | None:
        if self.exit is not None:
            return self.exit(*exc_info)  # type: ignore[no-any-return]
        context_api.detach(self.token)  # type: ignore[arg-type]
        return None

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        tracer, args = self.tracer, self.args
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*a: Any, **kw: Any) -> Any:
                with _LeanScope(tracer, args):
                    return await func(*a, **kw)

            return run_async

        @functools.wraps(func)
        def run(*a: Any, **kw: Any) -> Any:
            with _LeanScope(tracer, args):
                return func(*a, **kw)

        return run


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
