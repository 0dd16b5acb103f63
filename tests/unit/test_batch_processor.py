"""nativekit's batch span processor: bounded, batched, timed, flushed on demand and stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from nativekit._telemetry.batch import LeanBatchSpanProcessor
from nativekit._telemetry.otlp import LeanOTLPSpanExporter
from nativekit._telemetry.tracing import _processor


class Recorder(SpanExporter):
    """Remembers each batch; can hold exports until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.batches.append([s.name for s in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.closed = True


def _emit(processor: LeanBatchSpanProcessor, count: int, sampler: Any = ALWAYS_ON) -> None:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for n in range(count):
        tracer.start_span(f"s{n}").end()


def _wait(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_full_batch_is_exported_without_waiting_for_the_timer() -> None:
    """Reaching the batch size wakes the thread; the rest waits for the timer or a flush."""
    exporter = Recorder()
    processor = LeanBatchSpanProcessor(
        exporter, max_export_batch_size=4, schedule_delay_millis=3_600_000
    )
    _emit(processor, 6)
    _wait(lambda: exporter.batches)
    assert exporter.batches == [["s0", "s1", "s2", "s3"]]
    assert processor.force_flush()
    assert exporter.batches[1:] == [["s4", "s5"]]


def test_the_timer_exports_a_partial_batch() -> None:
    """Spans short of a batch are exported after the schedule delay."""
    exporter = Recorder()
    processor = LeanBatchSpanProcessor(exporter, schedule_delay_millis=50)
    _emit(processor, 3)
    _wait(lambda: exporter.batches)
    assert exporter.batches == [["s0", "s1", "s2"]]


def test_a_full_queue_drops_and_counts_new_spans() -> None:
    """While the export is stuck, spans past the queue size are dropped and counted."""
    exporter = Recorder()
    exporter.release.clear()
    processor = LeanBatchSpanProcessor(
        exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=3_600_000
    )
    _emit(processor, 2)  # a batch: the worker takes it and blocks in export
    _wait(lambda: not processor._queue)
    _emit(processor, 6)
    assert processor.dropped == 2
    exporter.release.set()
    processor.shutdown()
    exported = [name for batch in exporter.batches for name in batch]
    assert exported == ["s0", "s1", "s0", "s1", "s2", "s3"]


def test_shutdown_exports_what_is_queued_then_closes_the_exporter() -> None:
    """Spans queued at shutdown are exported; later spans are not queued."""
    exporter = Recorder()
    processor = LeanBatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
    _emit(processor, 3)
    processor.shutdown()
    assert exporter.batches == [["s0", "s1", "s2"]] and exporter.closed
    _emit(processor, 1)
    assert processor.force_flush() and exporter.batches == [["s0", "s1", "s2"]]


def test_unsampled_spans_are_not_exported() -> None:
    """Only sampled spans are queued."""
    exporter = Recorder()
    processor = LeanBatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
    _emit(processor, 3, sampler=ALWAYS_OFF)
    assert processor.force_flush() and exporter.batches == []


def test_settings_come_from_the_bsp_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_BSP_* set the queue, batch size and delay, as for the SDK's processor."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    processor = LeanBatchSpanProcessor(Recorder())
    assert (processor.max_queue_size, processor.batch_size, processor.schedule_delay) == (
        10,
        3,
        0.25,
    )
    processor.shutdown()


def test_only_nativekits_otlp_exporter_gets_nativekits_processor() -> None:
    """The OTLP exporter of nativekit is batched by nativekit's processor, others by the SDK's."""
    ours = _processor("otlp", LeanOTLPSpanExporter("http://127.0.0.1:9/v1/traces"))
    theirs = _processor("otlp", Recorder())
    assert isinstance(ours, LeanBatchSpanProcessor)
    assert not isinstance(theirs, LeanBatchSpanProcessor)
    ours.shutdown()
    theirs.shutdown()
