"""Cache counters, the circuit breaker and rate-limited error logging.

Counters are plain integers read by a Prometheus collector at scrape time, so
the hit path pays an attribute increment, not a lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

#: Error kinds counted in ``cache_errors_total`` (a fixed set keeps labels bounded).
ERROR_KINDS = ("backend", "breaker_open", "decode", "too_large", "encode")


class CacheStats:
    """Counters of one named cache (usually one decorated function)."""

    __slots__ = ("coalesced", "errors", "hits", "misses", "name", "near_hits", "stale")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.near_hits = 0
        self.misses = 0
        self.stale = 0
        self.coalesced = 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)


class StatsCollector(Collector):
    """Exposes every :class:`CacheStats` of a cache as Prometheus counters."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.stats: dict[str, CacheStats] = {}

    def get(self, name: str) -> CacheStats:
        """The stats for cache ``name``, created on first use."""
        found = self.stats.get(name)
        if found is None:
            found = self.stats[name] = CacheStats(name)
        return found

    def collect(self) -> Iterator[Any]:
        """Yield the counter families (called by the registry at scrape time)."""
        hits, misses, stale, coalesced, errors = families = self._families()
        for s in list(self.stats.values()):
            base = [self.service, s.name]
            hits.add_metric([*base, "remote"], s.hits)
            hits.add_metric([*base, "near"], s.near_hits)
            misses.add_metric(base, s.misses)
            stale.add_metric(base, s.stale)
            coalesced.add_metric(base, s.coalesced)
            for kind, value in s.errors.items():
                errors.add_metric([*base, kind], value)
        yield from families

    def describe(self) -> Iterator[Any]:
        """The families without samples (lets the registry detect name clashes)."""
        yield from self._families()

    def _families(self) -> tuple[CounterMetricFamily, ...]:
        labels = ["service", "cache"]
        hits = CounterMetricFamily(
            "cache_hits",
            "Cache hits, by layer (near: in-process, remote: backend).",
            labels=[*labels, "layer"],
        )
        misses = CounterMetricFamily(
            "cache_misses", "Cache misses (the function ran).", labels=labels
        )
        stale = CounterMetricFamily(
            "cache_stale_serves",
            "Hits served while an early refresh recomputed the value.",
            labels=labels,
        )
        coalesced = CounterMetricFamily(
            "cache_coalesced",
            "Calls that waited for another call's result instead of running.",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "cache_errors",
            "Cache operations that failed and fell through, by kind.",
            labels=[*labels, "kind"],
        )
        return hits, misses, stale, coalesced, errors

    def register(self, registry: CollectorRegistry) -> None:
        """Register on ``registry``."""
        registry.register(self)


class CircuitBreaker:
    """Stops calling a failing backend for ``reset`` seconds after ``threshold`` failures.

    Closed: calls pass. After ``threshold`` consecutive failures it opens: calls
    are skipped for ``reset`` seconds; then one trial call is let through per
    ``reset`` period until one succeeds, which closes the breaker. (A trial that
    never finishes, e.g. cancelled, cannot keep the breaker open for good.)
    """

    __slots__ = ("failures", "open_until", "reset", "threshold")

    def __init__(self, *, threshold: int, reset: float) -> None:
        self.threshold = threshold
        self.reset = reset
        self.failures = 0
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped (or only trial calls pass)."""
        return self.open_until != 0.0

    def allow(self) -> bool:
        """Whether a backend call may be made now."""
        if self.open_until == 0.0:
            return True
        now = time.monotonic()
        if now < self.open_until:
            return False
        self.open_until = now + self.reset  # this call is the trial of this period
        return True

    def success(self) -> None:
        """Record a successful call (closes the breaker)."""
        self.failures = 0
        self.open_until = 0.0

    def failure(self) -> bool:
        """Record a failed call; True if the breaker opened now."""
        self.failures += 1
        if self.failures >= self.threshold and self.open_until == 0.0:
            self.open_until = time.monotonic() + self.reset
            return True
        return False


class RateLimitedLog:
    """Lets one log line per ``interval`` seconds and key through, counting the rest."""

    def __init__(self, log: Any, interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, key: str, **fields: Any) -> None:
        """Log ``event`` unless one with ``key`` was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        self.log.warning(event, suppressed=suppressed, **fields)
