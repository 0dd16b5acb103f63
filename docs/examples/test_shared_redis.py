"""Tests on a Redis shared with other work: a logical database of the test process's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from nativekit.testing import databases, servers


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Server]:
    """The local Redis (or NATIVEKIT_TEST_REDIS_URL, or one started for the run)."""
    server = servers.start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: servers.Server) -> Iterator[str]:
    """The test Redis, on a logical database nobody else uses (one per xdist worker)."""
    database = databases.claim_database(redis_server.url)
    yield database.url
    database.release()


@pytest.mark.redis
def test_what_a_test_writes_stays_out_of_the_shared_database(
    redis_server: servers.Server, redis_url: str
) -> None:
    """Keys a test writes land in its claimed database, not in the one others use."""
    key = f"order:{uuid.uuid4().hex}"
    with redis.Redis.from_url(redis_url) as mine, redis.Redis.from_url(redis_server.url) as theirs:
        mine.set(key, "1")
        try:
            assert theirs.exists(key) == 0
        finally:
            mine.delete(key)  # the test deletes what it wrote, by name
