"""Prometheus metrics of publishers and consumers, registered on the service's registry."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nativekit._telemetry.metrics import LATENCY_BUCKETS

#: What a consumer did with a message: the ``outcome`` label of
#: ``nativekit_messages_consumed_total`` (a Literal, not an enum: it is set per message).
ConsumeOutcome = Literal["processed", "duplicate", "retried", "dead_lettered", "skipped"]


class MessagingMetrics:
    """Counters, histograms and gauges of one service's messaging."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.consumed = Counter(
            "nativekit_messages_consumed_total",
            "Messages handled by consumers, by topic, group and outcome "
            "(processed, duplicate, retried, dead_lettered, skipped).",
            ["service", "topic", "group", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "nativekit_message_handler_duration_seconds",
            "Time a consumer handler took (one attempt).",
            ["service", "topic", "group"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "nativekit_consumer_lag",
            "Records of a partition after the committed offset, as last fetched.",
            ["service", "topic", "group", "partition"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.published = Counter(
            "nativekit_messages_published_total",
            "Messages acknowledged by the broker, by topic.",
            ["service", "topic"],
            registry=registry,
        )
        self.dedup_errors = Counter(
            "nativekit_dedup_errors_total",
            "Failed calls to the dedup store (consumers pause meanwhile), by operation.",
            ["service", "group", "operation"],
            registry=registry,
        )
        self.lease_lost = Counter(
            "nativekit_dedup_leases_lost_total",
            "Claims whose lease expired and was taken by another worker before finishing.",
            ["service", "group"],
            registry=registry,
        )
        self._consumed: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def count(self, topic: str, group: str, outcome: ConsumeOutcome, n: int = 1) -> None:
        """Count ``n`` messages with ``outcome``."""
        key = (topic, group, outcome)
        child = self._consumed.get(key)
        if child is None:
            child = self._consumed[key] = self.consumed.labels(self.service, topic, group, outcome)
        child.inc(n)

    def _duration(self, topic: str, group: str) -> Histogram:
        key = (topic, group)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.duration.labels(self.service, topic, group)
        return child

    def observe(self, topic: str, group: str, seconds: float) -> None:
        """Record one handler run."""
        self._duration(topic, group).observe(seconds)

    def observe_many(self, topic: str, group: str, seconds: Sequence[float]) -> None:
        """Record many handler runs at once: the same histogram as one ``observe`` each,
        with one increment per touched bucket instead of two locked ones per run."""
        child = self._duration(topic, group)
        bounds, buckets, total = _parts(child)
        if bounds is None:
            for value in seconds:
                child.observe(value)
            return
        counts: dict[int, int] = {}
        for value in seconds:
            i = bisect_left(bounds, value)  # the first bucket with value <= bound
            counts[i] = counts.get(i, 0) + 1
        for i, n in counts.items():
            buckets[i].inc(n)
        total.inc(sum(seconds))


def _parts(child: Histogram) -> tuple[Any, Any, Any]:
    """The bounds, bucket values and sum of a histogram child (prometheus_client's
    internals; (None, None, None) if a future version renames them)."""
    try:
        return child._upper_bounds, child._buckets, child._sum
    except AttributeError:
        return None, None, None
