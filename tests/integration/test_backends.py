"""Readiness against real Redis and a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
from typing import Self

import pytest

from nativekit import BackendUnavailable, Service, Settings
from nativekit.backends.kafka import KafkaProbe, kafka_client_options
from nativekit.backends.redis import create_redis
from nativekit.testing import LifespanError, serve, servers


@pytest.mark.redis
async def test_ready_with_reachable_redis(redis_url: str) -> None:
    """/readyz pings Redis and reports the round trip."""
    svc = Service("redis-ok", settings=Settings(_env_file=None, redis={"url": redis_url}))
    async with serve(svc) as client:
        r = await client.get("/readyz")
        assert await svc.redis.ping()
    assert r.status_code == 200
    check = r.json()["checks"]["redis:ping"][0]
    assert check["status"] == "pass" and check["observedUnit"] == "ms"


@pytest.mark.redis
async def test_not_ready_when_redis_unreachable() -> None:
    """An unreachable Redis fails readiness of a service using the shared Redis client,
    with a message saying what to check."""
    port = servers.free_port()
    settings = Settings(
        _env_file=None,
        connect_timeout_seconds=0.5,
        redis={"url": f"redis://:pw@127.0.0.1:{port}/0"},
    )
    svc = Service("redis-down", settings=settings)
    assert svc.redis is not None  # used by the service's own code
    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    output = r.json()["checks"]["redis:ping"][0]["output"]
    assert "NATIVEKIT_REDIS_URL" in output and "redis://:***@127.0.0.1" in output
    assert ":pw@" not in output


@pytest.mark.kafka
async def test_ready_with_reachable_kafka(kafka_url: str) -> None:
    """/readyz fetches Kafka metadata and reports the broker count."""
    svc = Service(
        "kafka-ok",
        settings=Settings(_env_file=None, kafka={"url": kafka_url, "idempotent_producer": False}),
    )
    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    check = r.json()["checks"]["kafka:metadata"][0]
    assert check["status"] == "pass" and check["output"] == "1 broker(s)"


@pytest.mark.kafka
async def test_not_ready_when_kafka_unreachable() -> None:
    """An unreachable broker fails readiness with a message naming NATIVEKIT_KAFKA_URL."""
    port = servers.free_port()
    settings = Settings(
        _env_file=None,
        kafka={"url": f"kafka://127.0.0.1:{port}"},
        telemetry={"health_timeout_seconds": 3},
    )
    svc = Service("kafka-down", settings=settings)
    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    output = r.json()["checks"]["kafka:metadata"][0]["output"]
    assert "NATIVEKIT_KAFKA_URL" in output or "no answer within" in output


def test_kafka_options_carry_tls_and_sasl(tmp_path: object) -> None:
    """TLS and SASL settings reach the aiokafka options; the password is only in the options."""
    settings = Settings(
        _env_file=None,
        kafka={
            "url": "kafka://b1:9093,b2:9093",
            "tls": True,
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
            "sasl_password": "pw",
        },
    )
    options = kafka_client_options(settings)
    assert options["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == "pw"
    assert options["ssl_context"] is not None
    plain = kafka_client_options(Settings(_env_file=None, kafka={"url": "kafka://b:9092"}))
    assert plain["security_protocol"] == "PLAINTEXT" and "ssl_context" not in plain


def test_redis_client_refuses_memory_url() -> None:
    """Asking for a Redis client with memory:// is a configuration error saying what to set."""
    svc = Service("no-redis", settings=Settings(_env_file=None))
    with pytest.raises(ValueError, match="NATIVEKIT_REDIS_URL is 'memory://'"):
        _ = svc.redis
    assert issubclass(BackendUnavailable, ConnectionError)


@pytest.mark.redis
def test_starts_a_private_redis_server() -> None:
    """The harness can start its own Redis-protocol server on a free port and stop it."""
    server = servers.start_redis(reuse=False)
    try:
        host, port = server.url.removeprefix("redis://").removesuffix("/0").split(":")
        assert servers.redis_answers(host, int(port))
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


@pytest.mark.redis
async def test_pool_waits_for_a_free_connection(redis_url: str) -> None:
    """Bursts beyond the pool size wait for a connection instead of failing."""
    import asyncio

    settings = Settings(_env_file=None, redis={"url": redis_url, "max_connections": 2})
    svc = Service("small-pool", settings=settings)
    async with serve(svc):
        results = await asyncio.gather(*(svc.redis.ping() for _ in range(50)))
    assert results == [True] * 50


@pytest.mark.redis
async def test_pool_callers_wait_for_a_free_connection_up_to_the_timeout(redis_url: str) -> None:
    """With every connection taken a call waits: it proceeds on release, fails after timeout."""
    import asyncio

    import redis.exceptions

    settings = Settings(
        _env_file=None,
        operation_timeout_seconds=0.3,
        redis={"url": redis_url, "max_connections": 1},
    )
    client = create_redis(settings)
    pool = client.connection_pool
    try:
        held = await pool.get_connection()
        waiting = asyncio.create_task(client.ping())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await pool.release(held)
        assert await waiting is True
        held = await pool.get_connection()
        started = asyncio.get_running_loop().time()
        with pytest.raises(redis.exceptions.ConnectionError, match="No connection available"):
            await client.ping()
        assert 0.25 <= asyncio.get_running_loop().time() - started < 1.0
        await pool.release(held)
        assert await client.ping() is True
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_pool_reuses_its_connections_and_survives_a_dropped_one(redis_url: str) -> None:
    """Bursts and single calls share at most max_connections; a killed one is reconnected."""
    import asyncio
    import contextlib

    import redis.exceptions

    settings = Settings(_env_file=None, redis={"url": redis_url, "max_connections": 3})
    client = create_redis(settings)
    pool = client.connection_pool
    try:
        for _ in range(3):
            assert await asyncio.gather(*(client.ping() for _ in range(40))) == [True] * 40
            assert [await client.ping() for _ in range(20)] == [True] * 20
        (idle, _), (in_use, _) = pool.get_connection_count()
        assert 1 <= idle + in_use <= 3  # never more connections than max_connections
        own = await client.client_id()  # the connection the next call takes again (LIFO)
        killer = create_redis(settings)
        try:
            assert await killer.client_kill_filter(_id=own) == 1
        finally:
            await killer.aclose()
        with contextlib.suppress(redis.exceptions.ConnectionError):
            await client.ping()  # redis-py's pools alike: the call that finds it dead fails
        assert await client.ping() is True
        assert await client.client_id() != own
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_readiness_warn_keeps_a_cache_only_service_ready() -> None:
    """NATIVEKIT_REDIS_READINESS=warn: Redis down shows as warn, /readyz stays 200."""
    port = servers.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    warn = Settings(
        _env_file=None, connect_timeout_seconds=0.5, redis={"url": url, "readiness": "warn"}
    )
    svc = Service("cache-only", settings=warn)
    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["redis:ping"][0]["status"] == "warn"

    off = Service(
        "no-check", settings=Settings(_env_file=None, redis={"url": url, "readiness": "off"})
    )
    async with serve(off) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200 and "redis:ping" not in r.json().get("checks", {})


@pytest.mark.redis
async def test_redis_down_only_warns_for_a_cache_only_service() -> None:
    """With the default readiness, Redis down fails /readyz of a service whose consumers
    deduplicate in Redis, and only warns for one that uses Redis to cache (it falls
    through to the function)."""
    url = f"redis://127.0.0.1:{servers.free_port()}/0"
    settings = Settings(
        _env_file=None,
        redis={"url": url},
        connect_timeout_seconds=0.5,
        operation_timeout_seconds=0.5,
    )
    cache_only = Service("cache-only", settings=settings)

    @cache_only.cached(ttl=5, key="x:{n}")
    async def square(n: int) -> int:
        return n * n

    async with serve(cache_only) as client:
        assert await square(3) == 9
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["redis:ping"][0]["status"] == "warn"

    deduplicating = Service("dedup", settings=settings)

    @deduplicating.consumer("jobs", group="g")
    async def on_job(event: bytes) -> None: ...

    async with serve(deduplicating) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["redis:ping"][0]["status"] == "fail"


@pytest.mark.kafka
async def test_kafka_readiness_warn() -> None:
    """NATIVEKIT_KAFKA_READINESS=warn: an unreachable broker only warns."""
    port = servers.free_port()
    settings = Settings(
        _env_file=None,
        kafka={"url": f"kafka://127.0.0.1:{port}", "readiness": "warn"},
        telemetry={"health_timeout_seconds": 3},
    )
    async with serve(Service("kafka-warn", settings=settings)) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["kafka:metadata"][0]["status"] == "warn"


async def forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
) -> None:
    """Pipe a proxied connection to ``target`` and back until either side closes."""
    up_reader, up_writer = await asyncio.open_connection(*target)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


class Proxy:
    """A local TCP server in front of ``target`` (subclasses decide what it does)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class HoldingProxy(Proxy):
    """A TCP proxy to ``target`` that, while ``holding``, accepts connections and
    answers nothing (a broker that hangs); afterwards it forwards bytes both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.holding = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.holding:
            await reader.read()  # until the client gives up and closes
            writer.close()
            return
        await forward(reader, writer, self.target)


@pytest.mark.kafka
async def test_kafka_readiness_recovers_after_a_check_timed_out_while_connecting(
    kafka_url: str,
) -> None:
    """A check cancelled by its timeout during the probe's first connection leaves no
    half-connected client behind: once the broker answers, the check passes."""
    host, _, port = kafka_url.removeprefix("kafka://").partition(":")
    async with HoldingProxy((host, int(port))) as proxy:
        probe = KafkaProbe(
            Settings(_env_file=None, kafka={"url": f"kafka://127.0.0.1:{proxy.port}"})
        )
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(probe.check(), 0.5)
            proxy.holding = False
            result = await asyncio.wait_for(probe.check(), 10)
        finally:
            await probe.stop()
    assert result.output == "1 broker(s)"


@pytest.mark.kafka
async def test_a_producer_start_cancelled_while_connecting_leaves_nothing_running(
    kafka_url: str,
) -> None:
    """Cancelling the first publish while the producer connects stops that producer
    (no background task of it keeps running); the next publish connects afresh."""
    from nativekit.backends.kafka._broker import KafkaBroker

    host, _, port = kafka_url.removeprefix("kafka://").partition(":")
    async with HoldingProxy((host, int(port))) as proxy:
        settings = Settings(
            _env_file=None,
            kafka={"url": f"kafka://127.0.0.1:{proxy.port}", "idempotent_producer": False},
        )
        broker = KafkaBroker(settings)
        before = asyncio.all_tasks()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(broker.start(), 0.5)
        await asyncio.sleep(0.3)  # closed connections end the proxy's handlers
        left = [t for t in asyncio.all_tasks() - before if not t.done()]
        assert left == [], left
        proxy.holding = False
        try:
            await asyncio.wait_for(broker.start(), 10)
        finally:
            await broker.aclose()


@pytest.mark.redis
async def test_a_failed_startup_closes_the_shared_redis_client(redis_url: str) -> None:
    """A startup that fails after a component used the shared Redis client closes that
    client's connections (the lifespan runs no shutdown after a failed startup)."""
    svc = Service("redis-fails", settings=Settings(_env_file=None, redis={"url": redis_url}))
    ids: list[int] = []

    @svc.on_startup
    async def use_redis() -> None:
        ids.append(await svc.redis.client_id())

    @svc.on_startup
    async def broken() -> None:
        raise RuntimeError("cannot start (test)")

    client = svc.redis
    admin = create_redis(Settings(_env_file=None, redis={"url": redis_url}))
    try:
        with pytest.raises(LifespanError, match="cannot start"):
            async with serve(svc):
                pass
        deadline = asyncio.get_running_loop().time() + 2
        while str(ids[0]) in {c["id"] for c in await admin.client_list()}:
            assert asyncio.get_running_loop().time() < deadline, "connection still open"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
        await admin.aclose()


class DelayingProxy(Proxy):
    """A TCP proxy to ``target`` that holds each connection until ``release()``, then
    forwards it (what the client sent meanwhile included): a broker slow to answer."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.connected = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        """Forward the held connections and those to come."""
        self._released.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        await self._released.wait()
        await forward(reader, writer, self.target)


@pytest.mark.kafka
async def test_a_broker_closed_while_its_producer_connects_leaves_no_producer_running(
    kafka_url: str,
) -> None:
    """Closing the broker (service shutdown) while a first publish is still connecting
    the producer: that publish fails once connected, and no producer keeps running."""
    from nativekit.backends.kafka._broker import KafkaBroker

    host, _, port = kafka_url.removeprefix("kafka://").partition(":")
    async with DelayingProxy((host, int(port))) as proxy:
        settings = Settings(
            _env_file=None,
            kafka={"url": f"kafka://127.0.0.1:{proxy.port}", "idempotent_producer": False},
        )
        broker = KafkaBroker(settings)
        before = asyncio.all_tasks()
        connecting = asyncio.create_task(broker.start())
        await asyncio.wait_for(proxy.connected.wait(), 5)
        await broker.aclose()
        proxy.release()
        [outcome] = await asyncio.gather(asyncio.wait_for(connecting, 10), return_exceptions=True)
        try:
            assert isinstance(outcome, BackendUnavailable), outcome
            assert _aiokafka_tasks(asyncio.all_tasks() - before) == []
        finally:
            await broker.aclose()


def _aiokafka_tasks(tasks: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """The running tasks among ``tasks`` that aiokafka clients run (not the proxy's)."""
    return [
        t
        for t in tasks
        if not t.done()
        and "aiokafka" in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")
    ]
