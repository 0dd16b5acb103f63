"""Prometheus metrics of the saga runtime, on the service's registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nativekit._telemetry.metrics import LATENCY_BUCKETS

#: Seconds between two readings of stored saga counts and of the outbox backlog (gauges
#: a scrape would otherwise see only as fresh as the last readiness probe).
CENSUS_INTERVAL = 15.0


class SagaMetrics:
    """Counters by saga name, step duration histogram, in-flight gauge, recoveries,
    step interruptions, stored instances by status."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        labels = ["service", "saga"]
        self.started = Counter(
            "sagas_started_total", "Saga instances started.", labels, registry=registry
        )
        self.completed = Counter(
            "sagas_completed_total", "Saga instances that completed.", labels, registry=registry
        )
        self.compensated = Counter(
            "sagas_compensated_total",
            "Saga instances rolled back by their compensations.",
            labels,
            registry=registry,
        )
        self.failed = Counter(
            "sagas_failed_total",
            "Saga instances parked as FAILED for an operator.",
            labels,
            registry=registry,
        )
        self.recovered = Counter(
            "sagas_recovered_total",
            "Saga instances claimed by this replica after their lease expired.",
            labels,
            registry=registry,
        )
        self.step_duration = Histogram(
            "saga_step_duration_seconds",
            "Duration of one step attempt, by saga, step, direction and outcome.",
            ["service", "saga", "step", "direction", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.interruptions = Counter(
            "saga_step_interruptions_total",
            "Step attempts cut short by their process stopping (crash, SIGKILL), found on "
            "recovery; they are re-run without using up a retry. Not failures.",
            ["service", "saga", "step", "direction"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "sagas_in_flight",
            "Saga instances this replica is running now.",
            ["service"],
            registry=registry,
            multiprocess_mode="livesum",
        ).labels(service)
        self.stored = Gauge(
            "nativekit_sagas_stored",
            "Unfinished saga instances in the store, by saga and status (RUNNING, "
            "COMPENSATING, FAILED: parked for an operator), counted every 15 s by each "
            "replica: aggregate replicas with max, not sum.",
            ["service", "saga", "status"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._steps: dict[tuple[str, str, str, str], Histogram] = {}
        self._started: dict[str, Counter] = {}

    def declare(self, saga: str, steps: Iterable[str]) -> None:
        """Create the series of a saga at 0 (an alert's ``increase()`` misses a series
        that is born at 1, and a dashboard shows 0 rather than no data)."""
        for counter in (self.started, self.completed, self.compensated, self.failed):
            counter.labels(self.service, saga)
        self.recovered.labels(self.service, saga)
        for step in steps:
            for direction in ("forward", "compensate"):
                self.interruptions.labels(self.service, saga, step, direction)

    def count_started(self, saga: str) -> None:
        """Count one started instance."""
        child = self._started.get(saga)
        if child is None:
            child = self._started[saga] = self.started.labels(self.service, saga)
        child.inc()

    def observe_step(
        self, saga: str, step: str, direction: str, outcome: str, seconds: float
    ) -> None:
        """Record one step attempt's duration."""
        key = (saga, step, direction, outcome)
        child = self._steps.get(key)
        if child is None:
            child = self._steps[key] = self.step_duration.labels(
                self.service, saga, step, direction, outcome
            )
        child.observe(seconds)


class CommandMetrics:
    """Counters of commands sent and replies received, outbox backlog and relay lag."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.sent = Counter(
            "nativekit_saga_commands_sent_total",
            "Commands written to the outbox by saga command steps.",
            ["service", "saga", "step", "direction"],
            registry=registry,
        )
        self.replies = Counter(
            "nativekit_saga_replies_total",
            "Command replies consumed, by outcome: received (resumed a saga), late (the saga "
            "no longer waits for that attempt), ignored (unknown saga or malformed).",
            ["service", "outcome"],
            registry=registry,
        )
        self.backlog = Gauge(
            "nativekit_outbox_backlog",
            "Outbox entries written but not yet published and deleted.",
            ["service"],
            registry=registry,
        )
        self.oldest = Gauge(
            "nativekit_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry not yet published.",
            ["service"],
            registry=registry,
        )
        self.relay_lag = Histogram(
            "nativekit_outbox_relay_lag_seconds",
            "Time from writing an outbox entry to the broker's acknowledgement of it.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
