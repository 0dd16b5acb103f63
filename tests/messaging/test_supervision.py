"""Every background task of a consumer restarts after an unexpected error (logged and
counted in nativekit_background_task_restarts_total); one that keeps failing fails
readiness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.backends.redis._dedup import RedisDedupStore
from nativekit.messaging import MemoryBroker
from nativekit.messaging._wire.broker import TopicPartition
from nativekit.testing import capture_logs, serve
from tests.faulty import FailOnce, FaultyBroker
from tests.messaging.conftest import eventually
from tests.support import grouped

pytestmark = pytest.mark.redis


class Job(BaseModel):
    """The event."""

    n: int


def restarts(svc: Service, task: str) -> float:
    """Restarts of ``task`` counted on the service's registry."""
    value = svc.metrics.registry.get_sample_value(
        "nativekit_background_task_restarts_total", {"service": svc.name, "task": task}
    )
    return value or 0.0


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the real Redis."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def consumer_service(
    broker: MemoryBroker,
    client: aioredis.Redis,
    unique: str,
    fail: str | None = None,
    **extra: object,
) -> tuple[Service, list[int]]:
    """A service with one consumer of 'jobs' on ``broker`` and a real Redis dedup store
    (whose ``fail`` method raises once)."""
    settings: dict[str, object] = {
        "consumer_retry_backoff": 0.001,
        "tracing_enabled": False,
        "consumer_lag_interval": 0.05,
        "consumer_commit_interval": 0.0,
    }
    settings.update(extra)
    svc = Service("supervised", settings=Settings(**grouped(settings)))
    handled: list[int] = []

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        await asyncio.sleep(0.3 if fail == "renew_many" else 0)
        handled.append(event.n)

    def store(namespace: str) -> object:
        real = RedisDedupStore(client, namespace=f"{unique}:{namespace}")
        return FailOnce(real, fail) if fail is not None else real

    svc.messaging.use_broker(broker)
    svc.messaging.use_dedup_store(store)  # type: ignore[arg-type]
    return svc, handled


TASK = "consumer:g:" + "consumer_service.<locals>.on_job:"


@pytest.mark.parametrize(
    ("task", "broker_method", "store_method"),
    [
        ("join", "start", None),
        ("fetch", "fetch", None),
        ("commit", "commit", None),
        ("lag", "end_offsets", None),
        ("dispatch", None, "claim_many"),
        ("finish", None, "finish_many"),
        ("renew", None, "renew_many"),
    ],
)
async def test_a_failed_task_restarts_and_nothing_is_lost(
    task: str,
    broker_method: str | None,
    store_method: str | None,
    redis_client: aioredis.Redis,
    unique: str,
) -> None:
    """An unexpected error in one of a consumer's tasks restarts that task (logged with
    the error, counted): the message is handled once and its offset committed."""
    broker = FaultyBroker(broker_method) if broker_method else MemoryBroker()
    svc, handled = consumer_service(broker, redis_client, unique, store_method, dedup_lease=0.3)
    with capture_logs() as logs:
        async with serve(svc):
            await svc.publish("jobs", Job(n=1))
            await eventually(lambda: restarts(svc, TASK + task) == 1, what=f"{task} restart")
            await eventually(
                lambda: broker.committed_offsets("g") == {TopicPartition("jobs", 0): 1},
                what="the offset committed",
            )
            await asyncio.sleep(0.1)
    assert handled == [1]
    [logged] = [e for e in logs if e["event"] == "background_task.restarted"]
    assert logged["task"] == TASK + task
    assert logged["error"].startswith("Injected: ")


async def test_a_task_that_keeps_failing_fails_readiness(
    redis_client: aioredis.Redis, unique: str
) -> None:
    """A fetch loop failing again and again turns the consumer's readiness check to fail,
    naming the task and its error."""
    svc, _ = consumer_service(FaultyBroker("fetch", times=1000), redis_client, unique)
    async with serve(svc) as client:
        await eventually(lambda: restarts(svc, TASK + "fetch") >= 3, within=5)
        await asyncio.sleep(svc.settings.telemetry.health_cache_seconds)
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    [check] = ready.json()["checks"]["consumer:g:consumer_service.<locals>.on_job"]
    assert "a background task keeps failing: " + TASK + "fetch restarted" in check["output"]
    assert "Injected: fetch failed (injected)" in check["output"]
