"""The batch span processor nativekit puts in front of its own OTLP exporter.

It does what the SDK's ``BatchSpanProcessor`` does, with the same ``OTEL_BSP_*``
variables and defaults: ended, sampled spans wait in a bounded queue (a span arriving
at a full queue is dropped and counted), a thread exports them in batches of at most
``max_export_batch_size`` when a batch is full or ``schedule_delay_millis`` after the
last export, and ``force_flush`` and ``shutdown`` export what is left. Per span it
does less: no fork check, metrics or instrumentation suppression on the request's
path (it is used only with :class:`~nativekit._telemetry.otlp.LeanOTLPSpanExporter`,
whose ``http.client`` requests no OpenTelemetry instrumentation traces; the SDK's
exporter keeps the SDK's processor); a fork is handled by ``os.register_at_fork``.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import weakref
from typing import Any

from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["LeanBatchSpanProcessor"]

_log = logging.getLogger(__name__)
_SAMPLED = 0x01  # the W3C sampled bit of the trace flags


def _setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        _log.warning("invalid %s=%r: using %d", name, raw, default)
        return default


class LeanBatchSpanProcessor(SpanProcessor):
    """Queues ended, sampled spans and exports them in batches from a thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | None = None,
        schedule_delay_millis: int | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: int | None = None,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max_queue_size or _setting(OTEL_BSP_MAX_QUEUE_SIZE, 2048)
        self.schedule_delay = (
            schedule_delay_millis or _setting(OTEL_BSP_SCHEDULE_DELAY, 5000)
        ) / 1000
        self.batch_size = max_export_batch_size or _setting(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512)
        self.export_timeout = (
            export_timeout_millis or _setting(OTEL_BSP_EXPORT_TIMEOUT, 30000)
        ) / 1000
        if self.max_queue_size < 1 or self.batch_size < 1 or self.schedule_delay <= 0:
            raise ValueError("the queue size, batch size and schedule delay must be positive")
        self.batch_size = min(self.batch_size, self.max_queue_size)
        #: spans dropped because the queue was full
        self.dropped = 0
        self._reported = 0
        self._shutdown = False
        self._start()
        os.register_at_fork(after_in_child=functools.partial(_restart, weakref.ref(self)))

    def _start(self) -> None:
        """A fresh queue, locks and worker (at construction, and in a forked child)."""
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="nativekit-span-export", daemon=True)
        self._worker.start()

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span`` if sampled (drop and count it if the queue is full)."""
        context = span.context
        if context is None or not context.trace_flags & _SAMPLED or self._shutdown:
            return
        queue = self._queue
        size = len(queue)
        if size >= self.max_queue_size:
            self.dropped += 1
            return
        queue.append(span)
        if size + 1 == self.batch_size:
            self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while not self._shutdown:
            wake.wait(self.schedule_delay)
            wake.clear()
            if self._shutdown:
                break
            self._export(everything=False)

    def _export(self, *, everything: bool, deadline: float | None = None) -> bool:
        """Export full batches (or, if ``everything``, all queued spans, and any batch
        after a timer tick); True if the queue was drained before ``deadline``."""
        with self._export_lock:
            queue = self._queue
            first = True
            while queue and (everything or first or len(queue) >= self.batch_size):
                first = False
                if deadline is not None and time.monotonic() > deadline:
                    return False
                count = min(self.batch_size, len(queue))
                batch = [queue.popleft() for _ in range(count)]
                try:
                    self.exporter.export(batch)
                except Exception:  # an exporter's failure must not stop the thread
                    _log.exception("otlp.export.raised")
            if self.dropped != self._reported:
                _log.warning(
                    "otlp.queue.full dropped=%d max_queue_size=%d",
                    self.dropped - self._reported, self.max_queue_size,
                )  # fmt: skip
                self._reported = self.dropped
            return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every queued span now; False if ``timeout_millis`` passed first."""
        if self._shutdown:
            return True
        return self._export(everything=True, deadline=time.monotonic() + timeout_millis / 1000)

    def shutdown(self) -> None:
        """Stop the worker, export what is queued, then shut the exporter down."""
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._worker.join(self.export_timeout)
        self._export(everything=True, deadline=time.monotonic() + self.export_timeout)
        self.exporter.shutdown()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to do when a span starts."""


def _restart(ref: weakref.ref[LeanBatchSpanProcessor]) -> None:
    """In a forked child: the parent's queue and thread are not this process's."""
    processor = ref()
    if processor is not None:
        processor._start()
