"""Telemetry (private).

structlog logging, the Prometheus registry and HTTP metrics, OpenTelemetry tracing.
"""
