"""Shared fixtures: real Redis, Kafka-protocol and PostgreSQL servers, captured spans."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import nativekit
from nativekit.testing import databases, servers
from tests.browser import browser, page  # noqa: F401 - fixtures for tests of web pages

if TYPE_CHECKING:
    from nativekit.backends.postgres import Database

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
def redis_url(redis_server: servers.Server) -> Iterator[str]:
    """URL of the real Redis, on a logical database of this test process's own.

    The server may be shared: its other data stays in the databases it uses, so
    clean-ups that scan for a test's keys never walk it.
    """
    database = databases.claim_database(redis_server.url)
    yield database.url
    database.release()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[servers.RedisClusterServer]:
    """A real Redis Cluster (3 masters, 3 replicas): NATIVEKIT_TEST_REDIS_CLUSTER_URL or one
    started for this run (in about 2 s, on first use)."""
    cluster = servers.start_redis_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_client(redis_cluster: servers.RedisClusterServer) -> AsyncIterator[Any]:
    """A client of the cluster as a service builds it (``redis+cluster://``)."""
    from nativekit.backends.redis import create_redis

    client = create_redis(nativekit.Settings(_env_file=None, redis={"url": redis_cluster.url}))
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[servers.Server]:
    """A real Kafka-protocol broker: NATIVEKIT_TEST_KAFKA_URL or Tansu started for this run."""
    server = servers.start_kafka()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_url(kafka_server: servers.Server) -> Iterator[str]:
    """URL (kafka://host:port) of the real broker; this process's topics deleted at the end."""
    yield kafka_server.url
    # in a thread: a test of web pages leaves Playwright's event loop on this one
    servers.delete_topics_now(kafka_server.url, ISSUED)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.Server]:
    """A real PostgreSQL: NATIVEKIT_TEST_DATABASE_URL, the local one, or one started here."""
    server = servers.start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: servers.Server) -> Iterator[str]:
    """URL of a database of this test process's own on the real PostgreSQL, dropped at the
    end: runs sharing a server (and xdist workers) never see each other's tables."""
    from nativekit.testing._postgres import create_test_database

    database = create_test_database(postgres_server.url)
    yield database.url
    database.release()


@pytest.fixture
async def pg_database(postgres_url: str, unique: str) -> AsyncIterator[Database]:
    """A migrated nativekit schema of this test's own in the process's database; dropped
    afterwards."""
    from nativekit.backends.postgres import Database, upgrade
    from nativekit.settings import Settings

    database = Database(
        Settings(database={"url": postgres_url, "schema_name": f"t_{unique}", "pool_size": 5})
    )
    await upgrade(database)
    yield database
    async with database.connection("drop the test schema") as connection:
        await connection.execute(f"DROP SCHEMA {database.schema} CASCADE")
    await database.aclose()


# Every unique() of this process: the topics named with one are this process's to delete.
ISSUED: set[str] = set()


@pytest.fixture
def unique() -> str:
    """A short unique string for key prefixes, topic and group names."""
    value = uuid.uuid4().hex[:12]
    ISSUED.add(value)
    return value


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's NATIVEKIT_* variables or .env file."""
    for key in list(os.environ):
        if key.startswith("NATIVEKIT_") and not key.startswith("NATIVEKIT_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NATIVEKIT_ENVIRONMENT", "test")
    # replicas started in one test process would share a static group membership
    monkeypatch.delenv("HOSTNAME", raising=False)


@pytest.fixture(autouse=True)
def _interpreter_gc() -> Iterator[None]:
    """Tests run on the interpreter's own collector: importing an example shop module tunes
    it (nativekit.tune_gc), which would delay finalizers into later tests."""
    nativekit.restore_gc()
    yield
    nativekit.restore_gc()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test's first service configures logging anew (it is once per process otherwise)."""
    yield
    from nativekit._telemetry.logging import reset_logging

    reset_logging()


def _weight(items: list[pytest.Item]) -> float:
    """A file's expected run time, roughly: tests marked slow (subprocesses, shops, quick
    benchmark runs) take some 20 s each, the others a fraction of a second."""
    return sum(20.0 if item.get_closest_marker("slow") else 0.3 for item in items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the test files for ``make test`` (pytest-xdist, ``--dist loadfile
    --no-loadscope-reorder``): the longest files first, so that no long file starts last
    and holds one worker while the others are idle, and the fault files (long, each with a
    shop of its own) early but one in every two, so that no more than about two shops
    run at once."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.partition("::")[0], []).append(item)
    faults = [f for f, its in files.items() if its[0].get_closest_marker("faults")]
    others = sorted((f for f in files if f not in faults), key=lambda f: -_weight(files[f]))
    order: list[str] = []
    while faults or others:
        order += [faults.pop(0)] if faults else []
        order += [others.pop(0)] if others else []
    items[:] = [item for f in order for item in files[f]]
