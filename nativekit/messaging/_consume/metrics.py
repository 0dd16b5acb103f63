"""Prometheus metrics of publishers and consumers, registered on the service's registry."""

from __future__ import annotations

import collections
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from nativekit._telemetry.metrics import LATENCY_BUCKETS, multiprocess_dir

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
        duration = (
            "nativekit_message_handler_duration_seconds",
            "Time a consumer handler took (one attempt).",
            ["service", "topic", "group"],
        )
        # Several workers share values only through prometheus-client's own metrics.
        self.duration: Histogram | BulkHistogram = (
            BulkHistogram(*duration, buckets=LATENCY_BUCKETS, registry=registry)
            if multiprocess_dir() is None
            else Histogram(*duration, buckets=LATENCY_BUCKETS, registry=registry)
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
        self._durations: dict[tuple[str, str], Histogram | Buckets] = {}

    def count(self, topic: str, group: str, outcome: ConsumeOutcome, n: int = 1) -> None:
        """Count ``n`` messages with ``outcome``."""
        key = (topic, group, outcome)
        child = self._consumed.get(key)
        if child is None:
            child = self._consumed[key] = self.consumed.labels(self.service, topic, group, outcome)
        child.inc(n)

    def _duration(self, topic: str, group: str) -> Histogram | Buckets:
        key = (topic, group)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.duration.labels(self.service, topic, group)
        return child

    def observe(self, topic: str, group: str, seconds: float) -> None:
        """Record one handler run."""
        self._duration(topic, group).observe(seconds)

    def observe_many(self, topic: str, group: str, seconds: Sequence[float]) -> None:
        """Record many handler runs at once: the same histogram as one ``observe`` each."""
        child = self._duration(topic, group)
        if isinstance(child, Buckets):
            child.observe_many(seconds)
        else:
            for value in seconds:
                child.observe(value)


class Buckets:
    """The counts of one labelled series of a :class:`BulkHistogram`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket with value <= bound
        self.sum += value

    def observe_many(self, values: Sequence[float]) -> None:
        """Count many values: one increment per touched bucket (the values are placed
        and tallied in C, no bytecode runs per value)."""
        counts = self.counts
        for i, n in collections.Counter(map(bisect_left, repeat(self.bounds), values)).items():
            counts[i] += n
        self.sum += sum(values)


class BulkHistogram(Collector):
    """A Prometheus histogram that takes a batch of values in one call.

    prometheus-client's ``Histogram`` takes two locks per value; a consumer
    observes every handled message, a fetched batch at a time. This keeps plain
    counts in the event loop and exposes them through prometheus-client's public
    custom-collector API, with the same samples (``_bucket``, ``_count``,
    ``_sum``) as ``Histogram`` but no ``_created``. It is not for
    multiprocess mode (values stay in this process).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = tuple(float(b) for b in buckets if b != float("inf"))
        # the bucket labels exactly as prometheus-client's Histogram writes them
        go_string: Callable[[float], str] = floatToGoString
        self._les = [*(go_string(b) for b in self.bounds), "+Inf"]
        self._series: dict[tuple[str, ...], Buckets] = {}
        registry.register(self)

    def labels(self, *values: str) -> Buckets:
        """The series of these label values (created at zero on first use)."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            series = self._series[values] = Buckets(self.bounds)
        return series

    def describe(self) -> Iterator[Metric]:
        """The family, without samples (for registries that check names)."""
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        """The family with one cumulative bucket list, count and sum per series."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            running, cumulative = 0, []
            for le, n in zip(self._les, series.counts, strict=True):
                running += n
                cumulative.append((le, float(running)))
            family.add_metric(list(values), cumulative, series.sum)
        yield family
