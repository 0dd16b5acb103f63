"""Shared fixtures: real Redis and Kafka-protocol servers, captured spans."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nativekit.testing import servers

# One recording provider for the whole run; services reuse an installed provider.
SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test."""
    SPANS.clear()
    yield SPANS
    SPANS.clear()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Server]:
    """A real Redis: NATIVEKIT_TEST_REDIS_URL, the local one, or one started for this run."""
    server = servers.start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: servers.Server) -> str:
    """URL of the real Redis."""
    return redis_server.url


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[servers.Server]:
    """A real Kafka-protocol broker: NATIVEKIT_TEST_KAFKA_URL or Tansu started for this run."""
    server = servers.start_kafka()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_url(kafka_server: servers.Server) -> str:
    """URL (kafka://host:port) of the real broker."""
    return kafka_server.url


@pytest.fixture
def unique() -> str:
    """A short unique string for key prefixes, topic and group names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's NATIVEKIT_* variables or .env file."""
    for key in list(os.environ):
        if key.startswith("NATIVEKIT_") and not key.startswith("NATIVEKIT_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NATIVEKIT_ENVIRONMENT", "test")
    # hundreds of services start in a test process, each start would collect and freeze:
    # leave the collector alone (tests/unit/test_garbage.py sets it explicitly)
    monkeypatch.setenv("NATIVEKIT_GC_YOUNG_THRESHOLD", "0")
    # replicas started in one test process would share a static group membership
    monkeypatch.delenv("HOSTNAME", raising=False)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test's first service configures logging anew (it is once per process otherwise)."""
    yield
    from nativekit.logging import reset_logging

    reset_logging()
