"""Metrics of outbound HTTP calls, shared by the clients of one service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from nativekit._telemetry.metrics import LATENCY_BUCKETS


class ClientMetrics:
    """``http_client_requests_total`` and ``http_client_request_duration_seconds``."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.requests = Counter(
            "http_client_requests_total",
            "Outbound HTTP attempts by peer, method and status (the code, 'error' when no "
            "response came back, 'circuit_open' when the breaker refused the call).",
            ["service", "peer", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_client_request_duration_seconds",
            "Time of one outbound HTTP attempt, until the response headers arrived.",
            ["service", "peer", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.breaker_opened = Counter(
            "http_client_circuit_opened_total",
            "Times a peer host's circuit breaker opened.",
            ["service", "peer"],
            registry=registry,
        )

    def attempt(self, peer: str, method: str, status: str, seconds: float | None) -> None:
        """Count one attempt (and its duration, when it reached the peer)."""
        self.requests.labels(self.service, peer, method, status).inc()
        if seconds is not None:
            self.duration.labels(self.service, peer, method).observe(seconds)
