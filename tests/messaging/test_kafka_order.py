"""Per-key order under within-partition concurrency, on the real broker and real Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

import pytest
from pydantic import BaseModel

from nativekit import Service
from nativekit.backends.kafka._broker import KafkaBroker, KafkaGroupConsumer
from nativekit.messaging import Message, TopicPartition
from tests.messaging.conftest import eventually, kafka_settings

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

KEYS = ("a", "b", "c", "d", "e")
PER_KEY = 30


class Step(BaseModel):
    """The n-th event of one key."""

    key: str
    n: int


async def test_per_key_order_with_concurrency_on_kafka(
    monkeypatch: pytest.MonkeyPatch, kafka_url: str, redis_url: str, unique: str
) -> None:
    """One partition, concurrency 4: keys overlap, each key runs in order, commits stay behind."""
    topic, group = f"steps-{unique}", f"g-{unique}"
    settings = kafka_settings(kafka_url, redis_url)
    admin = KafkaBroker(settings)
    await admin.create_topics({topic: 1})
    await admin.aclose()

    seen: dict[str, list[int]] = {key: [] for key in KEYS}
    handled: set[int] = set()
    committed: list[int] = []
    violations: list[str] = []
    running = peak = 0
    jitter = random.Random(7)
    commit = KafkaGroupConsumer.commit

    async def checked(self: KafkaGroupConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp.topic != topic:
                continue
            if missing := set(range(offset)) - handled:
                violations.append(f"committed {offset} with {sorted(missing)[:5]} unhandled")
            if committed and offset < committed[-1]:
                violations.append(f"commit moved back from {committed[-1]} to {offset}")
            committed.append(offset)
        await commit(self, offsets)

    monkeypatch.setattr(KafkaGroupConsumer, "commit", checked)
    svc = Service("ordered", settings=settings)

    @svc.consumer(topic, group=group, concurrency=4)
    async def on_step(event: Step, msg: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(jitter.choice((0, 0.001, 0.004)))
        seen[event.key].append(event.n)
        handled.add(msg.offset)
        running -= 1

    await svc.startup(hook_sigterm=False)
    try:
        for n in range(PER_KEY):
            for key in KEYS:
                await svc.publish(topic, Step(key=key, n=n), key=key)
        total = PER_KEY * len(KEYS)
        await eventually(lambda: len(handled) == total, within=40, what="every step handled")
    finally:
        await svc.shutdown()

    assert violations == []
    assert seen == {key: list(range(PER_KEY)) for key in KEYS}
    assert peak > 1, "keys never overlapped: the test did not exercise concurrency"
    assert committed and committed[-1] == total


async def test_publishes_in_flight_together_keep_each_keys_order(
    kafka_url: str, unique: str
) -> None:
    """Hundreds of publishes in flight (which go through the lingering producer once
    enough are in flight) and lone ones mixed: each key's records are stored in the
    order the publishes started, and every publish lands."""
    import aiokafka

    from nativekit.backends.kafka._producer import LINGER_FROM

    topic = f"burst-{unique}"
    broker = KafkaBroker(kafka_settings(kafka_url))
    await broker.create_topics({topic: 2})
    try:
        for n in range(3):  # lone publishes first: nothing else in flight
            await broker.send(topic, Step(key="a", n=n).model_dump_json().encode(), key=b"a")
        burst = [(KEYS[i % len(KEYS)], 3 + i // len(KEYS)) for i in range(LINGER_FROM * 40)]
        await asyncio.gather(
            *(
                broker.send(topic, Step(key=k, n=n).model_dump_json().encode(), key=k.encode())
                for k, n in burst
            )
        )
    finally:
        await broker.aclose()
    consumer = aiokafka.AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_url.partition("://")[2], auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: dict[str, list[int]] = {key: [] for key in KEYS}
    try:
        while sum(map(len, seen.values())) < 3 + len(burst):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    step = Step.model_validate_json(record.value)
                    seen[step.key].append(step.n)
    finally:
        await consumer.stop()
    assert all(ns == sorted(ns) for ns in seen.values()), seen
    assert seen["a"][:3] == [0, 1, 2] and sum(map(len, seen.values())) == 3 + len(burst)
