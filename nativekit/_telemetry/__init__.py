"""Telemetry (private).

Structlog logging, the Prometheus registry and HTTP metrics, OpenTelemetry tracing.
"""
