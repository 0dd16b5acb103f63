"""Rebalance mid-stream: two consumers in one group, one joins and one leaves while messages
flow. No loss, no double effect, no commit past an unprocessed offset."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.backends.kafka._broker import KafkaBroker, KafkaGroupConsumer
from nativekit.messaging import MemoryBroker, MemoryDedupStore, Message
from nativekit.messaging._wire.broker import TopicPartition
from nativekit.messaging._wire.memory import MemoryGroupConsumer
from tests.messaging.conftest import eventually, kafka_settings

N = 240
PARTITIONS = 4


class Order(BaseModel):
    """The event."""

    order_id: str


class Scenario:
    """Two members of one group; records effects and checks every commit."""

    def __init__(self, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.effects: Counter[str] = Counter()
        self.handled: dict[int, set[int]] = {p: set() for p in range(PARTITIONS)}
        self.committed: dict[int, int] = {}
        self.violations: list[str] = []
        self.by_member: Counter[int] = Counter()

    def check_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Every offset below a committed one must have been handled already."""
        for tp, offset in offsets.items():
            missing = set(range(offset)) - self.handled[tp.partition]
            if missing:
                self.violations.append(f"{tp}: committed {offset}, unhandled {sorted(missing)}")
            if offset < self.committed.get(tp.partition, 0):
                self.violations.append(f"{tp}: commit moved back to {offset}")
            self.committed[tp.partition] = offset

    def member(self, settings: Settings, setup: Callable[[Service], None]) -> Service:
        """A service with one consumer in the group."""
        svc = Service("rebalance", settings=settings)
        setup(svc)
        index = len(self.by_member)
        self.by_member[index] = 0

        @svc.consumer(self.topic, group=self.group)
        async def handle(event: Order, msg: Message) -> None:
            await asyncio.sleep(0.002)
            self.effects[event.order_id] += 1
            self.handled[msg.partition].add(msg.offset)
            self.by_member[index] += 1

        return svc

    async def run(self, a: Service, b: Service, publisher: Service, within: float) -> None:
        """A runs; half the messages; B joins; the rest; A leaves; B finishes."""
        await a.startup(hook_sigterm=False)
        for i in range(N // 2):
            await publisher.publish(self.topic, Order(order_id=f"o-{i}"), key=f"k{i}")
        await eventually(lambda: len(self.effects) >= 20, within=within, what="A handling")
        await b.startup(hook_sigterm=False)
        for i in range(N // 2, N):
            await publisher.publish(self.topic, Order(order_id=f"o-{i}"), key=f"k{i}")
        await eventually(lambda: len(self.effects) >= N * 3 // 4, within=within, what="progress")
        await a.shutdown()
        await eventually(lambda: len(self.effects) == N, within=within, what="all handled")
        await b.shutdown()
        assert self.violations == []
        assert set(self.effects) == {f"o-{i}" for i in range(N)}
        assert max(self.effects.values()) == 1, "a message had two effects"
        assert sum(self.committed.values()) == N
        assert self.by_member[0] > 0 and self.by_member[1] > 0, self.by_member


async def test_rebalance_on_memory_broker(monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    """The scenario on the memory broker (eager rebalance, shared dedup store)."""
    scenario = Scenario(f"t-{unique}", f"g-{unique}")
    broker = MemoryBroker(default_partitions=PARTITIONS)
    store = MemoryDedupStore()
    commit = MemoryGroupConsumer.commit

    async def checked(self: MemoryGroupConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        scenario.check_commit(offsets)
        await commit(self, offsets)

    monkeypatch.setattr(MemoryGroupConsumer, "commit", checked)

    def setup(svc: Service) -> None:
        svc.messaging.use_broker(broker)
        svc.messaging.use_dedup_store(lambda ns: store)

    settings = Settings(telemetry={"tracing_enabled": False})
    a, b = scenario.member(settings, setup), scenario.member(settings, setup)
    publisher = Service("publisher", settings=settings)
    publisher.messaging.use_broker(broker)
    await scenario.run(a, b, publisher, within=10)


@pytest.mark.kafka
@pytest.mark.redis
async def test_rebalance_on_kafka(
    monkeypatch: pytest.MonkeyPatch, kafka_url: str, redis_url: str, unique: str
) -> None:
    """The scenario on the real broker with the Redis dedup store."""
    scenario = Scenario(f"t-{unique}", f"g-{unique}")
    settings = kafka_settings(kafka_url, redis_url)
    admin = KafkaBroker(settings)
    await admin.create_topics({scenario.topic: PARTITIONS})
    await admin.aclose()
    commit = KafkaGroupConsumer.commit

    async def checked(self: KafkaGroupConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        await commit(self, offsets)
        scenario.check_commit(offsets)

    monkeypatch.setattr(KafkaGroupConsumer, "commit", checked)

    def setup(svc: Service) -> None:
        return None

    a, b = scenario.member(settings, setup), scenario.member(settings, setup)
    publisher = Service("publisher", settings=settings)
    try:
        await scenario.run(a, b, publisher, within=40)
    finally:
        await publisher.messaging.broker.aclose()
        await _cleanup(a)


async def _cleanup(svc: Any) -> None:
    namespace = svc.messaging.consumers[0].name
    keys = [f"nk:dedup:{{{namespace}}}:fence"]
    client = svc.redis
    async for key in client.scan_iter(match=f"nk:dedup:{{{namespace}}}:*", count=10_000):
        keys.append(key)
    await client.delete(*keys)
    await client.aclose()
