"""Consumers on the real broker and real Redis: duplicates, dead letters, readiness."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import BaseModel

from nativekit import Service
from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.messaging import Message, Record
from nativekit.testing import serve
from tests.messaging.conftest import eventually, group_member, kafka_settings, new_topic

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


class Paid(BaseModel):
    """The event."""

    order_id: str


@pytest.fixture
async def topic(kafka_url: str, unique: str) -> str:
    """A fresh 2-partition topic."""
    return await new_topic(kafka_url, f"pay-{unique}", 2)


async def read_all(kafka_url: str, topic: str, count: int, group: str) -> list[Record]:
    """Read ``count`` records of ``topic`` with a throwaway group."""
    out: list[Record] = []
    async with group_member(kafka_url, topic, group) as member:
        for _ in range(100):
            out += await member.fetch(wait=0.2, max_records=100)
            if len(out) >= count:
                break
    return out


async def test_duplicates_poison_and_readiness_on_kafka(
    kafka_url: str, redis_url: str, topic: str, unique: str
) -> None:
    """Same id sequentially and concurrently → one effect; poison → DLQ; partition moves on."""
    svc = Service("kafka-consumer", settings=kafka_settings(kafka_url, redis_url))
    effects: Counter[str] = Counter()
    gate = asyncio.Event()

    @svc.consumer(topic, group=f"g-{unique}")
    async def on_paid(event: Paid, msg: Message) -> None:
        effects[event.order_id] += 1
        if event.order_id == "slow":
            await gate.wait()

    async with serve(svc) as client:
        await svc.publish(topic, Paid(order_id="a"), message_id=f"{unique}-a")
        await svc.publish(topic, Paid(order_id="a"), message_id=f"{unique}-a")
        for key in ("k1", "k2", "k3", "k4"):  # several partitions, same id, in flight together
            await svc.publish(topic, Paid(order_id="slow"), key=key, message_id=f"{unique}-s")
        await svc.publish(topic, b"not json", key="k1")
        await svc.publish(topic, Paid(order_id="after"), key="k1")
        await eventually(lambda: effects["slow"] == 1, within=30, what="one copy running")
        await asyncio.sleep(0.3)  # the other copies are fetched and wait behind the claim
        assert effects["slow"] == 1
        gate.set()
        await eventually(lambda: effects["after"] == 1, within=30, what="partition moved on")
        await eventually(
            lambda: (
                svc.metrics.registry.get_sample_value(
                    "nativekit_messages_consumed_total",
                    {
                        "service": "kafka-consumer",
                        "topic": topic,
                        "group": f"g-{unique}",
                        "outcome": "duplicate",
                    },
                )
                == 4
            ),
            within=30,
            what="four duplicates counted",
        )
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "pass"
    assert effects == {"a": 1, "slow": 1, "after": 1}
    [dead] = await read_all(kafka_url, f"{topic}.dlq", 1, f"dlq-{unique}")
    headers = dict(dead.headers)
    assert dead.value == b"not json"
    assert headers["dlq-original-topic"] == topic.encode()
    assert headers["dlq-error-type"] == b"DecodeError"
    namespace = svc.messaging.consumers[0].name
    keys = [k async for k in svc.redis.scan_iter(match=f"nk:dedup:{{{namespace}}}:*", count=10_000)]
    await svc.redis.delete(*keys)
    await svc.redis.aclose()


async def test_fetch_takes_an_equal_share_of_every_partition(
    kafka_url: str, topic: str, unique: str
) -> None:
    """With records buffered for both partitions, a fetch takes from both evenly
    (aiokafka alone drains one partition's buffer first)."""
    broker = KafkaBroker(kafka_settings(kafka_url))
    for i in range(200):
        await broker.send(topic, b"x", key=f"k{i}".encode())
    await broker.aclose()
    async with group_member(kafka_url, topic, f"share-{unique}") as member:
        first = await member.fetch(wait=5, max_records=2)
        assert first
        await asyncio.sleep(1.0)  # aiokafka prefetches both partitions meanwhile
        batch = await member.fetch(wait=5, max_records=10)
    per_partition = Counter(r.partition for r in batch)
    assert per_partition == {0: 5, 1: 5}, per_partition
