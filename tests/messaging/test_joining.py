"""Consumers join their groups in the background: startup never waits for the broker."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.errors import BackendUnavailable
from nativekit.messaging import MemoryBroker
from nativekit.messaging._wire.memory import MemoryGroupConsumer
from nativekit.testing import serve
from tests.messaging.conftest import eventually
from tests.support import grouped


class Job(BaseModel):
    """The event."""

    n: int


def service(name: str = "joins", **settings: object) -> Service:
    """A memory service with fast retries."""
    values: dict[str, object] = {"consumer_retry_backoff": 0.001, "tracing_enabled": False}
    values.update(settings)
    return Service(name, settings=Settings(**grouped(values)))


def refuse_joins(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Make memory group joins fail while the returned flag list holds True."""
    refusing = [True]
    join = MemoryGroupConsumer.start

    async def start(self: MemoryGroupConsumer) -> None:
        if refusing[0]:
            raise BackendUnavailable("broker not there yet (test)")
        await join(self)

    monkeypatch.setattr(MemoryGroupConsumer, "start", start)
    return refusing


async def test_a_consumer_joining_keeps_the_service_live_and_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While its group refuses it the service is live, /readyz and /startupz say the
    consumer is joining (with the last error); once it joins both pass and it consumes."""
    refusing = refuse_joins(monkeypatch)
    svc = service()
    svc.messaging.use_broker(MemoryBroker())
    handled: list[int] = []

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        handled.append(event.n)

    async with serve(svc) as client:
        await svc.publish("jobs", Job(n=1))
        await eventually(lambda: svc.messaging.consumers[0].join.error is not None)
        assert (await client.get("/livez")).status_code == 200
        ready = await client.get("/readyz")
        started = await client.get("/startupz")
        assert ready.status_code == 503 and started.status_code == 503
        [check] = ready.json()["checks"]["consumer:g:" + on_job.__qualname__]
        assert check["output"].startswith("joining consumer group 'g' for ")
        assert "broker not there yet" in check["output"]
        assert started.json()["output"] == "starting"
        refusing[0] = False
        await eventually(lambda: handled == [1], within=5)
        await asyncio.sleep(svc.settings.telemetry.health_cache_seconds)
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/startupz")).status_code == 200


async def test_a_join_past_its_deadline_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """After NATIVEKIT_CONSUMER_JOIN_TIMEOUT_SECONDS the check says the join is overdue and why."""
    refuse_joins(monkeypatch)
    svc = service(consumer_join_timeout=0.2)
    svc.messaging.use_broker(MemoryBroker())

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None: ...

    async with serve(svc) as client:
        await asyncio.sleep(0.3)
        started = await client.get("/startupz")
    [check] = started.json()["checks"]["consumer:g:" + on_job.__qualname__]
    assert check["output"].startswith(
        "has not joined consumer group 'g' within 0.2s (NATIVEKIT_CONSUMER_JOIN_TIMEOUT_SECONDS); "
        "last error: BackendUnavailable: broker not there yet (test)"
    )


async def test_stopping_while_joining_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service stopped while a consumer still joins stops at once, no task left."""
    refuse_joins(monkeypatch)
    svc = service()
    svc.messaging.use_broker(MemoryBroker())

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None: ...

    async with serve(svc):
        await eventually(lambda: svc.messaging.consumers[0].join.error is not None)
        tasks = list(svc.messaging.consumers[0]._feeders)
    assert tasks and all(t.done() for t in tasks)
    assert not svc.messaging.consumers[0].running


def test_each_consumer_gets_its_own_group_by_default() -> None:
    """Without group= a consumer's group is '<service>.<handler>'; its DONE marks stay
    under the service name, where they were when groups were one per service."""
    svc = service("billing")

    @svc.consumer("jobs")
    async def on_job(event: Job) -> None: ...

    @svc.consumer("jobs", group="audit")
    async def on_audit(event: Job) -> None: ...

    first, second = svc.messaging.consumers
    assert first.options.group == "billing.on_job"
    assert first.name == "billing:" + on_job.__qualname__
    assert second.options.group == "audit"


def test_the_previous_default_group_is_one_setting_away() -> None:
    """NATIVEKIT_CONSUMER_GROUP_DEFAULT=service puts consumers in the service's group."""
    svc = service("billing", consumer_group_default="service")

    @svc.consumer("jobs")
    async def on_job(event: Job) -> None: ...

    assert svc.messaging.consumers[0].options.group == "billing"


def test_static_membership_defaults_to_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HOSTNAME set each consumer is a static member named '<hostname>.<handler>';
    an empty setting turns static membership off."""
    monkeypatch.setenv("HOSTNAME", "billing-7d9f-x2")
    svc = service("billing")

    @svc.consumer("jobs")
    async def on_job(event: Job) -> None: ...

    consumer = svc.messaging.consumers[0]
    assert consumer.group_instance_id == "billing-7d9f-x2.on_job"
    kafka = KafkaBroker(Settings(kafka={"url": "kafka://127.0.0.1:9"}))

    async def nothing(tps: object) -> None: ...

    member = kafka.group_consumer(
        ["jobs"],
        group="g",
        on_assigned=nothing,
        on_revoked=nothing,
        instance_id=consumer.group_instance_id,
    )
    assert member.instance_id == "billing-7d9f-x2.on_job"
    off = service("billing", consumer_group_instance_id="")

    @off.consumer("jobs")
    async def on_other(event: Job) -> None: ...

    assert off.messaging.consumers[0].group_instance_id is None
