"""NATIVEKIT_REDIS_URL=redis+sentinel://: a master found through a real Sentinel, and
followed through a failover to its replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from nativekit import ConfigError, Service, Settings
from nativekit.testing import serve, servers

pytestmark = pytest.mark.redis


def port_of(url: str) -> int:
    """The port of a ``redis://127.0.0.1:PORT/0`` URL."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def cluster() -> Iterator[tuple[servers.Server, servers.Server, servers.Server]]:
    """A private master, its replica and a Sentinel watching the master (quorum 1)."""
    master = servers.start_redis(reuse=False)
    replica = sentinel = None
    try:
        replica = servers.start_redis(reuse=False, replica_of=port_of(master.url))
        sentinel = servers.start_sentinel(port_of(master.url))
        yield master, replica, sentinel
    finally:
        for server in (sentinel, replica, master):
            if server is not None:
                server.stop()


async def replica_known(sentinel_port: int, within: float = 15.0) -> None:
    """Wait until the Sentinel lists the replica (it can fail over only then)."""
    client = aioredis.Redis(host="127.0.0.1", port=sentinel_port)
    deadline = time.monotonic() + within
    try:
        while not await client.execute_command("SENTINEL", "REPLICAS", "mymaster"):
            assert time.monotonic() < deadline, "the Sentinel never saw the replica"
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def test_service_reaches_the_master_the_sentinel_names(
    cluster: tuple[servers.Server, servers.Server, servers.Server],
) -> None:
    """The service's client, cache and readiness work through the Sentinel, on the master."""
    master, _, sentinel = cluster
    svc = Service("sentinel-ok", settings=Settings(_env_file=None, redis={"url": sentinel.url}))
    calls = 0

    @svc.cached(ttl=30, key="answer")
    async def answer() -> int:
        nonlocal calls
        calls += 1
        return 42

    async with serve(svc) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert [await answer(), await answer()] == [42, 42] and calls == 1
        port = (await svc.redis.config_get("port"))["port"]
        role = (await svc.redis.execute_command("ROLE"))[0]
    assert (int(port), role) == (port_of(master.url), b"master")


async def test_commands_resume_on_the_promoted_replica_after_the_master_dies(
    cluster: tuple[servers.Server, servers.Server, servers.Server],
) -> None:
    """SIGKILL the master: once the Sentinel promoted the replica, the same client runs
    commands there (connection errors in between are retried), and the data is there."""
    master, replica, sentinel = cluster
    await replica_known(port_of(sentinel.url.replace("redis+sentinel", "redis")))
    settings = Settings(_env_file=None, operation_timeout_seconds=1.0, redis={"url": sentinel.url})
    svc = Service("sentinel-failover", settings=settings)
    client = svc.redis
    try:
        await client.set("k", "before")
        acked = [await client.execute_command("WAIT", 1, 500) for _ in range(6)]
        assert 1 in acked  # the replica has it
        assert master.process is not None
        master.process.kill()
        master.process.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                value = await client.get("k")
                role = (await client.execute_command("ROLE"))[0]
                if role == b"master":
                    break
            except (redis.exceptions.RedisError, OSError, TimeoutError):
                pass  # the master is gone until the Sentinel promotes the replica
            assert time.monotonic() < deadline, "no failover within 30 s"
            await asyncio.sleep(0.2)
        port = (await client.config_get("port"))["port"]
        await client.set("k", "after")
        assert await client.get("k") == b"after"
    finally:
        await client.aclose()
    assert value == b"before"
    assert int(port) == port_of(replica.url)


def test_sentinel_urls_are_checked() -> None:
    """A Sentinel URL without the master's name or a port is a ConfigError saying the form."""
    for bad in ("redis+sentinel://127.0.0.1/mymaster", "redis+sentinel://127.0.0.1:26379"):
        with pytest.raises(ConfigError, match=r"redis\+sentinel://host:port"):
            Settings(_env_file=None, redis={"url": bad})


async def test_an_unreachable_sentinel_is_backend_unavailable() -> None:
    """No Sentinel answering: readiness fails naming NATIVEKIT_REDIS_URL, password masked."""
    url = f"redis+sentinel://:secret@127.0.0.1:{servers.free_port()}/mymaster"
    svc = Service("sentinel-down", settings=Settings(_env_file=None, redis={"url": url}))
    assert svc.redis is not None  # used by the service: Redis is critical
    async with serve(svc) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    output = ready.json()["checks"]["redis:ping"][0]["output"]
    assert "NATIVEKIT_REDIS_URL" in output and "secret" not in output


async def test_sentinels_that_require_a_password(tmp_path: Path) -> None:
    """With NATIVEKIT_REDIS_SENTINEL_PASSWORD_FILE the service asks the Sentinels; without
    it readiness fails naming the URL."""
    master = servers.start_redis(reuse=False)
    sentinel = None
    try:
        sentinel = servers.start_sentinel(port_of(master.url), password="s3ntinel")
        secret = tmp_path / "sentinel-password"
        secret.write_text("s3ntinel\n")
        statuses = []
        for extra in ({"sentinel_password_file": secret}, {}):
            settings = Settings(_env_file=None, redis={"url": sentinel.url, **extra})
            svc = Service("sentinel-auth", settings=settings)
            assert svc.redis is not None  # used by the service: Redis is critical
            async with serve(svc) as client:
                ready = await client.get("/readyz")
            statuses.append(ready.status_code)
            if ready.status_code != 200:
                assert "NATIVEKIT_REDIS_URL" in ready.json()["checks"]["redis:ping"][0]["output"]
    finally:
        if sentinel is not None:
            sentinel.stop()
        master.stop()
    assert statuses == [200, 503]
