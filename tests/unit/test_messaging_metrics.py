"""Bulk observation of handler durations: the same histogram as one observe per run."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from nativekit._telemetry.metrics import LATENCY_BUCKETS
from nativekit.messaging._consume.metrics import MessagingMetrics


def samples(metrics: MessagingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every histogram sample but the creation time, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.duration.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_one_observe_per_value() -> None:
    """Values on, between and beyond the bucket bounds land in the same buckets."""
    values = [0.0, *LATENCY_BUCKETS, *(b * 1.5 for b in LATENCY_BUCKETS), 10_000.0]
    one, bulk = (MessagingMetrics("svc", CollectorRegistry()) for _ in range(2))
    for value in values:
        one.observe("orders", "g", value)
    bulk.observe_many("orders", "g", values)
    expected, got = samples(one), samples(bulk)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
    count = next(v for (name, _), v in got.items() if name.endswith("_count"))
    assert count == len(values)
