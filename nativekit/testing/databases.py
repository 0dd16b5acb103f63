"""A logical Redis database of its own for a test run on a shared Redis server.

A developer's or CI's Redis holds other data. Tests that clean up with ``SCAN MATCH``
would walk all of it after every test, so each test process (each pytest-xdist
worker) claims a logical database nobody else uses: one that is empty, or that an
earlier test run marked as a test database. The claim is a lease renewed by a
daemon thread and released at the end; the database keeps its marker so a later
run can claim it again. When no database can be claimed (Redis Cluster and some
managed servers have only database 0, or every database holds other data) the
given URL is used as it is.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis

__all__ = ["claim_database", "Database", "database_of", "with_database"]

MARKER_KEY = "nativekit:test-database"
LEASE_KEY = "nativekit:test-database:lease"
LEASE_SECONDS = 60
MAX_DATABASES = 64

# Claim atomically: refuse a database holding data that is not a test database's.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('DBSIZE') > 0 then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], 'claimed by nativekit test runs; other data here is left alone')
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def with_database(url: str, index: int) -> str:
    """``url`` (``redis://`` or ``rediss://``) pointing at logical database ``index``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{index}", parts.query, parts.fragment))


def database_of(url: str) -> int:
    """The logical database a ``redis://`` URL names (0 when it names none)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


@dataclass
class Database:
    """A claimed logical database (``index`` is None when the base URL is used as is)."""

    url: str
    index: int | None = None
    token: str = ""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _renew_until_released(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            while not self._stop.wait(LEASE_SECONDS / 4):
                try:
                    client.eval(_RENEW, 1, LEASE_KEY, self.token, LEASE_SECONDS)
                except redis.RedisError:
                    continue  # a server restarted by a test: renew on the next turn
        finally:
            client.close()

    def release(self) -> None:
        """Give the database back (its marker stays, for the next run to claim)."""
        if self.index is None:
            return
        self._stop.set()
        client = redis.Redis.from_url(self.url)
        try:
            client.eval(_RELEASE, 1, LEASE_KEY, self.token)
        finally:
            client.close()


def claim_database(base_url: str) -> Database:
    """Claim a free logical database on the server of ``base_url`` (never its own one).

    The URL's own database is skipped: that is where the data of whoever shares
    the server lives.
    """
    if urlsplit(base_url).scheme not in ("redis", "rediss"):
        return Database(base_url)
    token = uuid.uuid4().hex
    for index in range(MAX_DATABASES):
        if index == database_of(base_url):
            continue
        url = with_database(base_url, index)
        client = redis.Redis.from_url(url)
        try:
            claimed = client.eval(_CLAIM, 2, LEASE_KEY, MARKER_KEY, token, LEASE_SECONDS)
        except redis.ResponseError:
            break  # past the server's last database, or SELECT refused (cluster mode)
        finally:
            client.close()
        if claimed:
            database = Database(url, index, token)
            threading.Thread(
                target=database._renew_until_released, name=f"redis-db-{index}", daemon=True
            ).start()
            return database
    return Database(base_url)
