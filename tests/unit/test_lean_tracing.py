"""The provider nativekit installs skips recording spans until a processor is attached."""

from __future__ import annotations

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nativekit._telemetry.tracing import LeanTracerProvider

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"


def test_lean_spans_carry_fresh_ids_and_the_parents_trace() -> None:
    """Without a processor spans are not recorded, yet nest, get new span ids and propagate."""
    tracer = LeanTracerProvider().get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"a": 1}) as outer:
        with tracer.start_as_current_span("inner") as inner:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            assert trace.get_current_span() is inner
        assert trace.get_current_span() is outer
    o, i = outer.get_span_context(), inner.get_span_context()
    assert not outer.is_recording()
    assert o.is_valid and i.is_valid and o.trace_id == i.trace_id and o.span_id != i.span_id
    assert o.trace_flags.sampled and i.trace_flags.sampled
    assert carrier["traceparent"] == f"00-{i.trace_id:032x}-{i.span_id:016x}-{i.trace_flags:02x}"


def test_lean_spans_follow_the_sdk_sampling_of_a_remote_parent() -> None:
    """A child of a sampled or unsampled remote parent gets the flags the SDK would give it."""
    lean = LeanTracerProvider().get_tracer("t")
    sdk = TracerProvider().get_tracer("t")
    for flags in ("01", "00"):
        parent = propagate.extract({"traceparent": PARENT.format(flags=flags)})
        got = lean.start_span("child", context=parent).get_span_context()
        want = sdk.start_span("child", context=parent).get_span_context()
        assert got.trace_id == want.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert got.trace_flags == want.trace_flags
        assert got.trace_flags.sampled is (flags == "01")


def test_attaching_a_processor_records_spans_of_existing_tracers() -> None:
    """A tracer handed out before add_span_processor records from then on."""
    provider = LeanTracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("before"):
        pass
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("after", attributes={"k": "v"}):
        tracer.start_span("plain").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["plain", "after"]
    assert exporter.get_finished_spans()[1].attributes == {"k": "v"}


async def test_a_decorated_function_gets_a_new_span_per_call() -> None:
    """start_as_current_span as a decorator of an async function: one new span per call."""
    tracer = LeanTracerProvider().get_tracer("t")

    @tracer.start_as_current_span("work")
    async def work() -> trace.SpanContext:
        return trace.get_current_span().get_span_context()

    first, second = await work(), await work()
    assert first.is_valid and second.is_valid
    assert first.span_id != second.span_id and first.trace_id != second.trace_id
    assert not trace.get_current_span().get_span_context().is_valid


async def test_a_function_decorated_while_lean_is_recorded_once_a_processor_is_attached() -> None:
    """Decorating while no processor is attached does not pin the function to lean spans."""
    provider = LeanTracerProvider()
    tracer = provider.get_tracer("t")

    @tracer.start_as_current_span("work", attributes={"k": "v"})
    async def work() -> bool:
        return trace.get_current_span().is_recording()

    assert await work() is False
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert await work() is True
    assert [(s.name, s.attributes) for s in exporter.get_finished_spans()] == [("work", {"k": "v"})]


def test_a_decorated_plain_function_and_a_failing_scope_restore_the_context() -> None:
    """A decorated plain function gets a new span per call; an exception leaves no span current."""
    tracer = LeanTracerProvider().get_tracer("t")

    @tracer.start_as_current_span("work")
    def work() -> trace.SpanContext:
        return trace.get_current_span().get_span_context()

    first, second = work(), work()
    assert first.is_valid and second.is_valid and first.span_id != second.span_id
    with pytest.raises(KeyError, match="boom"), tracer.start_as_current_span("failing"):
        raise KeyError("boom")
    assert not trace.get_current_span().get_span_context().is_valid


@pytest.mark.parametrize("sampler", ["always_on", "always_off", "default", "ratio"])
def test_lean_flags_and_trace_state_match_the_sdk_for_each_sampler(sampler: str) -> None:
    """Static and parent-based samplers answered without a call give the SDK's flags and
    the parent's trace state, for roots and for children of sampled and unsampled parents."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        DEFAULT_ON,
        ParentBasedTraceIdRatio,
    )

    chosen = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF, "default": DEFAULT_ON,
              "ratio": ParentBasedTraceIdRatio(0.5)}[sampler]  # fmt: skip
    lean = LeanTracerProvider(sampler=chosen).get_tracer("t")
    sdk = TracerProvider(sampler=chosen).get_tracer("t")
    for flags in ("01", "00"):
        carrier = {"traceparent": PARENT.format(flags=flags), "tracestate": "k=v"}
        parent = propagate.extract(carrier)
        got = lean.start_span("child", context=parent).get_span_context()
        want = sdk.start_span("child", context=parent).get_span_context()
        assert (got.trace_flags, got.trace_state) == (want.trace_flags, want.trace_state)
    for _ in range(20):
        root = lean.start_span("root").get_span_context()
        same = sdk.sampler.should_sample(None, root.trace_id, "root").decision.is_sampled()
        assert root.trace_flags.sampled == same and not root.trace_state


@pytest.mark.parametrize("sampler", ["ratio", "parent-ratio", "always_off", "default"])
def test_with_a_processor_dropped_spans_skip_the_sdk_and_kept_ones_are_recorded(
    sampler: str,
) -> None:
    """With an exporter, a span the sampler drops is non-recording with the SDK's flags and
    trace state; a kept root is recorded by the SDK on the trace id it was decided on."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        DEFAULT_ON,
        ParentBasedTraceIdRatio,
        TraceIdRatioBased,
    )

    chosen = {"ratio": TraceIdRatioBased(0.3), "parent-ratio": ParentBasedTraceIdRatio(0.3),
              "always_off": ALWAYS_OFF, "default": DEFAULT_ON}[sampler]  # fmt: skip
    provider = LeanTracerProvider(sampler=chosen)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    sdk = TracerProvider(sampler=chosen).get_tracer("t")
    kept = 0
    for _ in range(400):
        span = tracer.start_span("root")
        context = span.get_span_context()
        want = chosen.should_sample(None, context.trace_id, "root").decision.is_sampled()
        assert span.is_recording() is want is context.trace_flags.sampled
        assert context.is_valid and not context.trace_state
        with (
            trace.use_span(span, end_on_exit=True),
            tracer.start_as_current_span("child") as child,
        ):
            assert child.get_span_context().trace_id == context.trace_id
            assert child.is_recording() is want  # same trace id, or the parent's flag
        kept += want
    finished = exporter.get_finished_spans()
    assert len([s for s in finished if s.name == "root"]) == kept
    if sampler in ("ratio", "parent-ratio"):
        assert 60 <= kept <= 180  # 0.3 of 400, far from the tails
    for flags in ("01", "00"):
        carrier = {"traceparent": PARENT.format(flags=flags), "tracestate": "k=v"}
        parent = propagate.extract(carrier)
        got = tracer.start_span("child", context=parent)
        want_span = sdk.start_span("child", context=parent)
        g, w = got.get_span_context(), want_span.get_span_context()
        assert (g.trace_id, g.trace_flags, g.trace_state) == (
            w.trace_id,
            w.trace_flags,
            w.trace_state,
        )
        assert got.is_recording() is want_span.is_recording()


def test_an_unknown_sampler_is_asked_by_the_sdk_for_every_span() -> None:
    """A sampler nativekit cannot read as data (here a subclass) decides every span."""
    from opentelemetry.sdk.trace.sampling import Decision, SamplingResult, TraceIdRatioBased

    class Odd(TraceIdRatioBased):
        calls = 0

        def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
            type(self).calls += 1
            return SamplingResult(Decision.RECORD_AND_SAMPLE if self.calls % 2 else Decision.DROP)

    provider = LeanTracerProvider(sampler=Odd(0.5))
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    tracer = provider.get_tracer("t")
    recorded = [tracer.start_span("s").is_recording() for _ in range(4)]
    assert recorded == [True, False, True, False] and Odd.calls == 4
