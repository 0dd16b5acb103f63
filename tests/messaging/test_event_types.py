"""``event_types=``: a consumer of a topic with several event types takes only its own."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from nativekit import ConfigError, Service, Settings
from nativekit.messaging import Message, TopicPartition
from nativekit.messaging._wire.memory import MemoryBroker
from nativekit.testing import MessagingHarness, serve
from tests.messaging.conftest import eventually, group_member, kafka_settings, new_topic


class OrderPlaced(BaseModel):
    """Has every field of OrderConfirmed: it would validate as one."""

    order_id: str
    total: int
    customer_id: str


class OrderConfirmed(BaseModel):
    """The event the handler wants."""

    order_id: str
    total: int


def service() -> Service:
    """A service on memory backends."""
    return Service("inventory", settings=Settings(telemetry={"tracing_enabled": False}))


def skipped(svc: Service, topic: str, group: str) -> float | None:
    """The ``skipped`` count of a consumer group on ``topic``."""
    labels = {"service": svc.name, "topic": topic, "group": group, "outcome": "skipped"}
    return svc.metrics.registry.get_sample_value("nativekit_messages_consumed_total", labels)


async def test_other_event_types_are_skipped_not_validated_as_the_wanted_one() -> None:
    """An OrderPlaced would pass as an OrderConfirmed; with event_types it is skipped and
    counted, the handler never sees it, and the wanted type is handled as usual."""
    svc = service()
    confirmed: list[str] = []

    @svc.consumer("orders", group="inventory", event_types=[OrderConfirmed])
    async def on_confirmed(event: OrderConfirmed) -> None:
        confirmed.append(event.order_id)

    async with MessagingHarness(svc) as harness:
        placed = await harness.deliver("orders", OrderPlaced(order_id="o1", total=5,
                                                              customer_id="c"))  # fmt: skip
        done = await harness.deliver("orders", OrderConfirmed(order_id="o1", total=5))
        raw = await harness.deliver("orders", b"{}")  # event-type "bytes"
    assert (placed.outcome, done.outcome, raw.outcome) == ("skipped", "processed", "skipped")
    assert placed.attempts == 0 and placed.error is None
    assert confirmed == ["o1"]
    assert skipped(svc, "orders", "inventory") == 2


async def test_records_without_an_event_type_are_handled_and_skips_are_committed() -> None:
    """A record with no event-type header (another producer) is validated as usual; the
    offsets of skipped records are committed like handled ones."""
    svc = service()
    broker = MemoryBroker()
    svc.messaging.use_broker(broker)
    seen: list[tuple[str, str | None]] = []

    @svc.consumer("orders", group="inventory", event_types=["OrderConfirmed"])
    async def on_confirmed(event: OrderConfirmed, msg: Message) -> None:
        seen.append((event.order_id, msg.event_type))

    async with serve(svc):
        await svc.publish("orders", OrderPlaced(order_id="o1", total=1, customer_id="c"))
        await broker.send("orders", b'{"order_id": "o2", "total": 2}')
        await svc.publish("orders", OrderPlaced(order_id="o3", total=3, customer_id="c"))
        await eventually(lambda: seen == [("o2", None)], what="the untyped record handled")
        await eventually(
            lambda: broker.committed_offsets("inventory") == {("orders", 0): 3},
            what="all three offsets committed",
        )
    assert skipped(svc, "orders", "inventory") == 2


def test_event_types_and_unknown_options_are_checked() -> None:
    """An empty or ill-typed event_types, and a misspelt option, are ConfigErrors."""
    svc = service()
    with pytest.raises(ConfigError, match="skip every message"):
        svc.consumer("orders", event_types=[])
    with pytest.raises(ConfigError, match="model classes or event type names, got 3"):
        svc.consumer("orders", event_types=[3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['concurency'\]"):
        svc.consumer("orders", concurency=2)  # type: ignore[call-arg]


@pytest.fixture
async def topic(kafka_url: str, unique: str) -> str:
    """A fresh 1-partition topic."""
    return await new_topic(kafka_url, f"events-{unique}", 1)


@pytest.mark.kafka
@pytest.mark.redis
async def test_skipped_records_are_not_claimed_on_kafka_and_redis(
    kafka_url: str, redis_url: str, topic: str, unique: str
) -> None:
    """On the real broker and store: only the wanted records are claimed and marked DONE;
    the group's committed offset passes the skipped ones."""
    svc = Service("inventory", settings=kafka_settings(kafka_url, redis_url))
    group = f"g-{unique}"
    confirmed: list[str] = []

    @svc.consumer(topic, group=group, event_types=[OrderConfirmed])
    async def on_confirmed(event: OrderConfirmed) -> None:
        confirmed.append(event.order_id)

    async with serve(svc):
        for n in range(3):
            await svc.publish(topic, OrderPlaced(order_id=f"p{n}", total=n, customer_id="c"))
            await svc.publish(topic, OrderConfirmed(order_id=f"c{n}", total=n))
        await eventually(lambda: skipped(svc, topic, group) == 3, within=30, what="3 skipped")
        await eventually(lambda: len(confirmed) == 3, within=30, what="3 handled")
    assert confirmed == ["c0", "c1", "c2"]
    namespace = svc.messaging.consumers[0].name
    keys = [k async for k in svc.redis.scan_iter(match=f"nk:dedup:{{{namespace}}}:*", count=10_000)]
    buckets = [k for k in keys if b":b:" in k]  # the record hashes (see redis_dedup.py)
    assert buckets, "no dedup records written"
    assert sum([await svc.redis.hlen(k) for k in buckets]) == 3  # the handled ones only
    await svc.redis.delete(*keys)
    await svc.redis.aclose()
    assert await committed_offset(kafka_url, group, TopicPartition(topic, 0)) == 6


async def committed_offset(kafka_url: str, group: str, tp: TopicPartition) -> int | None:
    """The offset ``group`` committed for ``tp`` (read by a new member of the group)."""
    async with group_member(kafka_url, tp.topic, group) as member:
        return await member.committed(tp)


class OrderCancelled(BaseModel):
    """The third event of the orders topic."""

    order_id: str
    reason: str


async def test_a_union_handler_gets_the_model_its_event_type_header_names() -> None:
    """``event: A | B``: the event-type header picks the model even where the payload
    fits both; without the header the union is validated as pydantic does; a payload
    that does not fit its named model is dead-lettered naming the union."""
    svc = service()
    seen: list[BaseModel] = []

    @svc.consumer("orders", group="inventory")
    async def on_order(event: OrderConfirmed | OrderCancelled) -> None:
        seen.append(event)

    fits_both = b'{"order_id": "o1", "total": 5, "reason": "late"}'
    async with MessagingHarness(svc) as harness:
        as_cancelled = await harness.deliver(
            "orders", fits_both, headers={"event-type": "OrderCancelled"}
        )
        as_confirmed = await harness.deliver(
            "orders", fits_both, headers={"event-type": "OrderConfirmed"}
        )
        await harness.broker.send("orders", b'{"order_id": "o2", "reason": "r"}')  # no header
        await eventually(lambda: len(seen) == 3, what="the untyped record handled")
        wrong = await harness.deliver(
            "orders", b'{"order_id": "o3", "total": 1}', headers={"event-type": "OrderCancelled"}
        )
    assert (as_cancelled.outcome, as_confirmed.outcome) == ("processed", "processed")
    assert seen == [
        OrderCancelled(order_id="o1", reason="late"),
        OrderConfirmed(order_id="o1", total=5),
        OrderCancelled(order_id="o2", reason="r"),
    ]
    assert wrong.outcome == "dead_lettered"
    assert wrong.error is not None and "OrderConfirmed | OrderCancelled" in wrong.error


def test_union_annotations_must_be_models_with_distinct_names() -> None:
    """A union with a non-model member, or two models of one name, is a ConfigError."""
    svc = service()
    with pytest.raises(ConfigError, match="union of models"):

        @svc.consumer("orders")
        async def mixed(event: OrderConfirmed | int) -> None: ...

    with pytest.raises(ConfigError, match="share a class name"):

        @svc.consumer("orders")
        async def twins(event: OrderConfirmed | Elsewhere.OrderConfirmed) -> None: ...


class Elsewhere:
    """Another service's model of the same name."""

    class OrderConfirmed(BaseModel):
        """Same class name as the module's OrderConfirmed."""

        order_id: str
