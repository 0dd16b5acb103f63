"""Test runs claim logical Redis databases of their own and leave other data alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from nativekit.testing import databases, servers


@pytest.fixture
def private_server() -> Iterator[servers.Server]:
    """A Redis of this test alone (databases 0-15), stopped afterwards."""
    server = servers.start_redis(reuse=False)
    yield server
    server.stop()


def _client(url: str, index: int) -> redis.Redis:
    return redis.Redis.from_url(databases.with_database(url, index))


@pytest.mark.redis
def test_claims_skip_the_given_database_data_of_others_and_held_claims(
    private_server: servers.Server,
) -> None:
    """A claim never takes the URL's database, one with other data, or one claimed already."""
    base = databases.with_database(private_server.url, 2)
    other = _client(base, 1)
    other.set("someone-else", "1")
    first = databases.claim_database(base)
    second = databases.claim_database(base)
    try:
        assert (first.index, second.index) == (0, 3)
        assert databases.database_of(first.url) == 0
        assert _client(base, 1).keys() == [b"someone-else"]
    finally:
        first.release()
        second.release()
        other.close()


@pytest.mark.redis
def test_a_released_database_with_test_leftovers_is_claimed_again(
    private_server: servers.Server,
) -> None:
    """After release the marked database is free again, whatever the earlier run left in it."""
    first = databases.claim_database(private_server.url)
    client = redis.Redis.from_url(first.url)
    client.set("left-by-a-test", "1")
    first.release()
    again = databases.claim_database(private_server.url)
    try:
        assert again.index == first.index
        assert client.get("left-by-a-test") == b"1"
    finally:
        again.release()
        client.close()


@pytest.mark.redis
def test_without_a_free_database_the_url_is_used_as_given(
    private_server: servers.Server,
) -> None:
    """When every other database holds someone's data, the given URL comes back unchanged."""
    for index in range(1, 16):
        with _client(private_server.url, index) as client:
            client.set("someone-else", "1")
    database = databases.claim_database(private_server.url)
    assert (database.url, database.index) == (private_server.url, None)
    database.release()


def test_other_schemes_are_used_as_given() -> None:
    """A Sentinel or Cluster URL is not rewritten: those servers are not shared this way."""
    url = "redis+sentinel://127.0.0.1:26379/mymaster"
    assert databases.claim_database(url).url == url
