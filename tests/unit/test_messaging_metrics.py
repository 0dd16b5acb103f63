"""Handler durations: the same histogram samples as prometheus-client's own Histogram."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from nativekit._telemetry.metrics import LATENCY_BUCKETS
from nativekit.messaging._consume.metrics import MessagingMetrics

VALUES = [0.0, *LATENCY_BUCKETS, *(b * 1.5 for b in LATENCY_BUCKETS), 10_000.0]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(families: Iterable[Metric]) -> Samples:
    """Every histogram sample but the creation time, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
        if not s.name.endswith("_created")
    }


def reference(values: list[float]) -> Samples:
    """What prometheus-client's Histogram reports for ``values`` observed one by one."""
    histogram = Histogram(
        "nativekit_message_handler_duration_seconds",
        "Time a consumer handler took (one attempt).",
        ["service", "topic", "group"],
        buckets=LATENCY_BUCKETS,
        registry=CollectorRegistry(),
    )
    child = histogram.labels("svc", "orders", "g")
    for value in values:
        child.observe(value)
    return samples(histogram.collect())


def assert_same(got: Samples, expected: Samples) -> None:
    """Same sample names and labels; values equal up to float summation order."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


@pytest.mark.parametrize("bulk", [True, False], ids=["observe_many", "observe"])
def test_durations_equal_prometheus_histogram(bulk: bool) -> None:
    """Values on, between and beyond the bucket bounds land in Histogram's buckets."""
    metrics = MessagingMetrics("svc", CollectorRegistry())
    if bulk:
        metrics.observe_many("orders", "g", VALUES[:5])
        metrics.observe_many("orders", "g", VALUES[5:])
    else:
        for value in VALUES:
            metrics.observe("orders", "g", value)
    got = samples(metrics.duration.collect())
    assert_same(got, reference(VALUES))
    count = next(v for (name, _), v in got.items() if name.endswith("_count"))
    assert count == len(VALUES)


def test_durations_in_the_exposition() -> None:
    """The registry's text exposition carries the histogram's bucket, count and sum lines."""
    registry = CollectorRegistry(auto_describe=True)
    metrics = MessagingMetrics("svc", registry)
    metrics.observe_many("orders", "g", [0.0007, 0.2])
    text = generate_latest(registry).decode()
    name = "nativekit_message_handler_duration_seconds"
    assert f"# TYPE {name} histogram" in text
    for line in (
        f'{name}_bucket{{group="g",le="0.0005",service="svc",topic="orders"}} 0.0',
        f'{name}_bucket{{group="g",le="0.001",service="svc",topic="orders"}} 1.0',
        f'{name}_bucket{{group="g",le="+Inf",service="svc",topic="orders"}} 2.0',
        f'{name}_count{{group="g",service="svc",topic="orders"}} 2.0',
    ):
        assert line in text.splitlines()
