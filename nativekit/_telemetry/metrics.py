"""Prometheus metrics: one registry per service, HTTP RED metrics, /metrics exposition.

Each :class:`Service` owns a ``CollectorRegistry`` so several services (or
tests) in one process never clash on metric names. Components register their
own metrics on ``service.metrics.registry``.

Under several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory shared by the workers (prometheus-client's multiprocess mode); the
``/metrics`` endpoint then aggregates every worker's values.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Buckets for request latency: sub-millisecond resolution up to 10 s.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def multiprocess_dir() -> str | None:
    """The prometheus-client multiprocess directory, if multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class InFlight:
    """Requests being handled: the ``http_requests_in_flight`` gauge and this process's
    own count of them (the gauge's value is not readable through public API).

    In a single process the gauge reads the count when scraped (``set_function``), so a
    request only adds and subtracts one; in multiprocess mode each change is written
    to the gauge, which the other processes' scrape reads from its file."""

    __slots__ = ("count", "gauge")

    def __init__(self, gauge: Gauge) -> None:
        self.gauge: Gauge | None = gauge
        #: requests being handled now in this process
        self.count = 0
        if multiprocess_dir() is None:
            gauge.set_function(lambda: self.count)
            self.gauge = None

    def inc(self) -> None:
        """One more request in flight."""
        self.count += 1
        if self.gauge is not None:
            self.gauge.inc()

    def dec(self) -> None:
        """One request fewer in flight."""
        self.count -= 1
        if self.gauge is not None:
            self.gauge.dec()


class Metrics:
    """The metrics of one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir() is None:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = InFlight(
            Gauge(
                "http_requests_in_flight",
                "HTTP requests being handled now.",
                ["service"],
                registry=self.registry,
                multiprocess_mode="livesum",
            ).labels(service)
        )
        #: (method, route, status) -> its requests counter and duration histogram
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def in_flight_count(self) -> float:
        """Requests being handled now (this process)."""
        return float(self.in_flight.count)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and record its duration."""
        if method not in KNOWN_METHODS:
            method = "OTHER"
        key = (method, route, status)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (
                self.requests.labels(self.service, method, route, str(status)),
                self.duration.labels(self.service, method, route),
            )
        found[0].inc()
        found[1].observe(seconds)


def exposition(registries: Iterable[CollectorRegistry]) -> bytes:
    """Render the registries as one Prometheus text exposition.

    Families with the same name (process metrics, HTTP metrics of several
    services in one process) are merged so each name appears once.
    """
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        merged_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged_registry)  # type: ignore[no-untyped-call]
        return generate_latest(merged_registry)
    registries = list(registries)
    if len(registries) == 1:
        return generate_latest(registries[0])
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_MergedCollector(registries))
    return generate_latest(merged)


class _MergedCollector(Collector):
    def __init__(self, registries: list[CollectorRegistry]) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for registry in self.registries:
            for family in registry.collect():
                target = families.get(family.name)
                if target is None:
                    target = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:  # process/GC collectors repeat per service
                        seen.add(key)
                        target.samples.append(sample)
        yield from families.values()


def metrics_endpoint(
    registries: list[CollectorRegistry],
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving the given registries."""

    async def metrics(request: Request) -> Response:
        return Response(exposition(registries), media_type=CONTENT_TYPE_LATEST)

    return metrics
