"""The tracer provider nativekit installs: the SDK's, minus the spans it would not record.

A span the SDK does not record is a ``NonRecordingSpan`` carrying a trace id, a span
id, the sampler's flags and a trace state; the SDK builds it through its whole
``start_span`` (sampler objects, a ``SamplingResult``, its own bookkeeping), which costs
about as much as the request it describes. :class:`LeanTracerProvider`'s tracers build
the same span directly:

* every span while no span processor is attached (nothing would receive a recorded
  span: the default ``none`` exporter); adding one (``provider.add_span_processor``)
  makes every tracer record from then on;
* with a processor, the spans the sampler drops, when the sampler is one whose
  decision is data (:func:`_fixed_decision`: the SDK's static, parent-based and
  trace-id-ratio samplers). At ``parentbased_traceidratio`` 0.1 that is nine root
  spans in ten. A kept root span is then built by the SDK with the trace id the
  decision was made on (:class:`_ChosenIds`), so the SDK's sampler, asked again, agrees.

Any other sampler is asked by the SDK for every span, as without nativekit. With
``always_on`` every span goes straight to the SDK: there is no decision to make first.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    StaticSampler,
    TraceIdRatioBased,
)

__all__ = ["LeanTracerProvider", "sampler_reads_attributes"]

_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_RANDOM = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))  # newer APIs (W3C level 2)
_LIMIT: int = TraceIdRatioBased.TRACE_ID_LIMIT
_ALL = _LIMIT + 1  # a bound every trace id is below


class LeanTracerProvider(TracerProvider):
    """The SDK provider, whose tracers skip the SDK for spans it would not record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: True while no span processor is attached: spans are not recorded.
        self.lean = True
        #: the provider's id generator, able to hand the SDK a trace id chosen beforehand
        self.chosen_ids = _ChosenIds(self.id_generator)
        fixed = _fixed_decision(self.sampler)
        if fixed is not None and 0 < fixed[1] < _ALL:
            # only a ratio decides on a root's trace id: other samplers' roots are all
            # kept or all dropped, so the SDK's own generator is asked, at its own cost
            self.id_generator = self.chosen_ids  # type: ignore[assignment]  # any IdGenerator

    def add_span_processor(self, span_processor: Any) -> None:
        """Attach a processor (an exporter's): spans are recorded from now on."""
        super().add_span_processor(span_processor)
        self.lean = False

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        """The SDK tracer, behind one that builds the spans the SDK would not record."""
        return _LeanTracer(super().get_tracer(*args, **kwargs), self)


def sampler_reads_attributes(tracer: trace.Tracer) -> bool:
    """Whether ``tracer``'s sampler may read the attributes a span starts with: False only
    for a nativekit tracer whose sampler decides on ids and flags alone (see
    :func:`_fixed_decision`), whose spans may then get their attributes when they end."""
    return not (isinstance(tracer, _LeanTracer) and tracer.fixed is not None)


class _ChosenIds(IdGenerator):
    """An id generator whose next trace id in this thread can be chosen beforehand."""

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self.chosen = threading.local()
        is_random = getattr(inner, "is_trace_id_random", None)  # newer SDKs
        self.random = bool(is_random is not None and is_random())

    def choose(self, trace_id: int) -> None:
        """This thread's next ``generate_trace_id`` returns ``trace_id`` (0: none chosen)."""
        self.chosen.trace_id = trace_id

    def generate_trace_id(self) -> int:
        """The chosen trace id, once; else the inner generator's."""
        chosen = self.chosen
        trace_id: int = getattr(chosen, "trace_id", 0)
        if trace_id:
            chosen.trace_id = 0
            return trace_id
        return self.inner.generate_trace_id()

    def generate_span_id(self) -> int:
        """The inner generator's span id."""
        return self.inner.generate_span_id()

    def is_trace_id_random(self) -> bool:
        """Whether the inner generator's trace ids are random (W3C level 2)."""
        return self.random


class _LeanTracer(trace.Tracer):
    """An SDK tracer that builds the non-recording spans itself, with the trace id, span
    id, flags and trace state the SDK would give them."""

    def __init__(self, sdk: Any, provider: LeanTracerProvider) -> None:
        self.sdk = sdk
        self.provider = provider
        #: the sampler's decision as data, when it needs no call: see :func:`_fixed_decision`
        self.fixed = _fixed_decision(sdk.sampler)
        #: every span is recorded (``always_on``): no parent lookup or trace id to decide on
        self.always = self.fixed == (False, _ALL)
        #: the generator the provider was given (or the SDK's default)
        self.ids: IdGenerator = provider.chosen_ids.inner
        self.random_ids = bool(_RANDOM and provider.chosen_ids.is_trace_id_random())

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
        """A span: recorded by the SDK when a processor is attached and the sampler keeps
        it, else a non-recording one."""
        if self.provider.lean:
            return trace.NonRecordingSpan(self.lean_context(name, context, kind, attributes, links))
        fixed = self.fixed
        if fixed is not None and not self.always:
            parent = trace.get_current_span(context).get_span_context()
            if parent.is_valid:
                if not _sampled(fixed, parent, parent.trace_id):
                    random_id = bool(parent.trace_flags & _RANDOM)
                    return trace.NonRecordingSpan(
                        self._context(parent.trace_id, False, parent.trace_state, random_id)
                    )
            elif fixed[1] < _ALL:  # a root that may be dropped: decide on its trace id,
                # then have the SDK build it with that id (a root always kept: the SDK's)
                trace_id = self.ids.generate_trace_id()
                if not _sampled(fixed, parent, trace_id):
                    return trace.NonRecordingSpan(
                        self._context(trace_id, False, None, self.random_ids)
                    )
                chosen = self.provider.chosen_ids
                chosen.choose(trace_id)
                try:
                    return self.sdk.start_span(  # type: ignore[no-any-return]
                        name, context, kind, attributes, links, start_time,
                        record_exception, set_status_on_exception,
                    )  # fmt: skip
                finally:
                    chosen.choose(0)
        return self.sdk.start_span(  # type: ignore[no-any-return]
            name, context, kind, attributes, links, start_time,
            record_exception, set_status_on_exception,
        )  # fmt: skip

    def lean_context(
        self,
        name: str,
        context: context_api.Context | None,
        kind: trace.SpanKind,
        attributes: Any,
        links: Sequence[trace.Link] | None,
    ) -> trace.SpanContext:
        """The context the SDK would give the span, whether or not it would record it."""
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
            random_id = bool(parent.trace_flags & _RANDOM)
        else:
            trace_id = self.ids.generate_trace_id()
            random_id = self.random_ids
        fixed = self.fixed
        if fixed is None:
            sampler = self.sdk.sampler
            result = sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled, trace_state = result.decision.is_sampled(), result.trace_state
        else:  # these samplers keep the parent's trace state
            sampled = _sampled(fixed, parent, trace_id)
            trace_state = parent.trace_state if parent.is_valid else None
        return self._context(trace_id, sampled, trace_state, random_id)

    def _context(
        self, trace_id: int, sampled: bool, trace_state: Any, random_id: bool
    ) -> trace.SpanContext:
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_id:
            flags = trace.TraceFlags(flags | _RANDOM)
        return trace.SpanContext(
            trace_id,
            self.ids.generate_span_id(),
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
        if not self.provider.lean and self.fixed is None:
            return self.sdk.start_as_current_span(
                name, context, kind, attributes, links, start_time,
                record_exception, set_status_on_exception, end_on_exit,
            )  # fmt: skip
        # A function decorated now may run after a processor is attached: each entry
        # decides again.
        return _LeanScope(
            self,
            (name, context, kind, attributes, links, start_time,
             record_exception, set_status_on_exception, end_on_exit),
        )  # fmt: skip


#: samplers whose decision is data: description -> (follows the parent, the root's bound)
_STATIC: dict[str, tuple[bool, int]] = {
    ALWAYS_ON.get_description(): (False, _ALL),
    ALWAYS_OFF.get_description(): (False, 0),
    DEFAULT_ON.get_description(): (True, _ALL),  # type: ignore[no-untyped-call]
    DEFAULT_OFF.get_description(): (True, 0),  # type: ignore[no-untyped-call]
}
_RATIO = re.compile(r"TraceIdRatioBased\{([^{}]*)\}")


def _fixed_decision(sampler: Any) -> tuple[bool, int] | None:
    """What ``sampler`` decides, as data: (whether a span with a valid parent takes the
    parent's sampled flag; the bound a root's trace id must be below, compared as
    ``TraceIdRatioBased`` compares it). Known are the SDK's ``always_on``, ``always_off``,
    ``parentbased_always_on`` (its default), ``parentbased_always_off``, ``traceidratio``
    and ``parentbased_traceidratio``, with the default delegates; None for any other
    sampler (subclasses included), which is then asked for every span."""
    kind = type(sampler)
    description: str = sampler.get_description()
    if kind is StaticSampler or kind is ParentBased:
        return _STATIC.get(description)
    if kind is TraceIdRatioBased:
        return (False, sampler.bound)
    if kind is ParentBasedTraceIdRatio:
        # its root sampler is private: rebuild it from the rate in the description
        found = _RATIO.search(description)
        try:
            rate = float(found.group(1)) if found else -1.0
            if ParentBasedTraceIdRatio(rate).get_description() != description:  # type: ignore[no-untyped-call]
                return None
        except ValueError:
            return None
        return (True, TraceIdRatioBased(rate).bound)
    return None


def _sampled(fixed: tuple[bool, int], parent: trace.SpanContext, trace_id: int) -> bool:
    """The decision :func:`_fixed_decision` described, for a span of ``trace_id`` whose
    parent (possibly invalid) is ``parent``."""
    if fixed[0] and parent.is_valid:
        return bool(parent.trace_flags.sampled)
    return trace_id & _LIMIT < fixed[1]


class _LeanScope:
    """What ``start_as_current_span`` returns unless the SDK must ask its sampler: a
    context manager making the span current, and a decorator (of plain and async
    functions) entering a new scope per call, as the SDK's own return value is."""

    __slots__ = ("args", "exit", "token", "tracer")

    def __init__(self, tracer: _LeanTracer, args: tuple[Any, ...]) -> None:
        self.tracer = tracer
        self.args = args  # name, context, kind, attributes, links, then the SDK's options
        self.exit: Any = None  # the __exit__ of the scope of a recorded span
        self.token: object = None

    def __enter__(self) -> trace.Span:
        tracer = self.tracer
        if tracer.provider.lean:
            span: trace.Span = trace.NonRecordingSpan(tracer.lean_context(*self.args[:5]))
        elif tracer.fixed is None:  # a processor was attached since, for another sampler
            scope = tracer.sdk.start_as_current_span(*self.args)
            self.exit = scope.__exit__
            return scope.__enter__()  # type: ignore[no-any-return]
        else:
            span = tracer.start_span(*self.args[:8])
            if span.is_recording():  # as the SDK's start_as_current_span does
                _, _, _, _, _, _, record, set_status, end_on_exit = self.args
                scope = trace.use_span(span, end_on_exit, record, set_status)
                self.exit = scope.__exit__
                return scope.__enter__()
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
