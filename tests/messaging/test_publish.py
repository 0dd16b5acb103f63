"""Publishing: headers, encoding, trace context across the broker, metrics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

import nativekit
from nativekit import Service, Settings
from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.messaging import Message
from nativekit.testing import MessagingHarness
from tests.messaging.conftest import kafka_settings


class Shipped(BaseModel):
    """The event."""

    order_id: str


async def test_publish_sets_headers_and_returns_where_it_landed() -> None:
    """Message id (UUID), event type, content type, produced-at; bytes go as octet-stream."""
    svc = Service("pub")
    async with MessagingHarness(svc) as harness:
        published = await svc.publish("ships", Shipped(order_id="o"), key="o", headers={"a": "b"})
        raw = await svc.publish("ships", b"\x01", message_id="fixed")
        first, second = harness.published("ships")
    uuid.UUID(published.message_id)
    assert (published.topic, published.partition, published.offset) == ("ships", 0, 0)
    assert first.value == b'{"order_id":"o"}' and first.key == b"o"
    assert first.event_type == "Shipped" and first.header("content-type") == "application/json"
    assert first.header("produced-at") and first.header("a") == "b"
    assert raw.message_id == "fixed" == second.message_id
    assert second.header("content-type") == "application/octet-stream"


async def test_publish_rejects_plain_dicts() -> None:
    """Only pydantic models and bytes are published; the error says how to fix it."""
    svc = Service("pub")
    async with MessagingHarness(svc):
        with pytest.raises(TypeError, match="pydantic model or bytes"):
            await svc.publish("ships", {"order_id": "o"})  # type: ignore[arg-type]


async def test_consume_span_continues_the_producer_trace(spans: InMemorySpanExporter) -> None:
    """The consumer's span is a child of the publish span: one trace across the broker."""
    svc = Service("traced")

    @svc.consumer("ships", group="g")
    async def on_shipped(event: Shipped) -> None:
        with nativekit_span("inside"):
            return None

    async with MessagingHarness(svc) as harness:
        with trace.get_tracer("test").start_as_current_span("http"):
            await harness.deliver("ships", Shipped(order_id="o"))
    by_name = {s.name: s for s in spans.get_finished_spans()}
    publish, process, inside = by_name["ships publish"], by_name["ships process"], by_name["inside"]
    assert publish.context.trace_id == process.context.trace_id == by_name["http"].context.trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert inside.parent is not None and inside.parent.span_id == process.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "g"
    assert process.attributes["nativekit.outcome"] == "processed"


def nativekit_span(name: str) -> object:
    """A child span via nativekit's helper."""
    from nativekit._telemetry.tracing import span

    return span(name)


async def test_metrics_count_published_consumed_and_observe_durations() -> None:
    """Published and consumed counters, handler durations and lag land on the registry."""
    svc = Service("metered")

    @svc.consumer("ships", group="g")
    async def on_shipped(event: Shipped, msg: Message) -> None:
        return None

    async with MessagingHarness(svc):
        harness_deliveries = [
            await svc.publish("ships", Shipped(order_id=str(i))) for i in range(3)
        ]
        registry = svc.metrics.registry
        from tests.messaging.conftest import eventually

        await eventually(
            lambda: (
                registry.get_sample_value(
                    "nativekit_messages_consumed_total",
                    {"service": "metered", "topic": "ships", "group": "g", "outcome": "processed"},
                )
                == 3
            )
        )
        await eventually(
            lambda: (
                registry.get_sample_value(
                    "nativekit_consumer_lag",
                    {"service": "metered", "topic": "ships", "group": "g", "partition": "0"},
                )
                == 0
            )
        )
    assert len(harness_deliveries) == 3
    assert (
        registry.get_sample_value(
            "nativekit_messages_published_total", {"service": "metered", "topic": "ships"}
        )
        == 3
    )
    assert (
        registry.get_sample_value(
            "nativekit_message_handler_duration_seconds_count",
            {"service": "metered", "topic": "ships", "group": "g"},
        )
        == 3
    )


def test_import_nativekit_stays_light() -> None:
    """Declaring nothing imports neither aiokafka nor redis from the messaging package."""
    import subprocess
    import sys

    code = (
        "import sys, nativekit; s = nativekit.Service('x');"
        "import nativekit.messaging;"
        "print(any(m.startswith(('aiokafka', 'redis')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.kafka
async def test_publish_on_kafka_waits_for_the_ack(kafka_url: str, unique: str) -> None:
    """svc.publish on Kafka returns the partition and offset the broker assigned."""
    settings: Settings = kafka_settings(kafka_url)
    broker = KafkaBroker(settings)
    await broker.create_topics({f"p-{unique}": 1})
    await broker.aclose()
    svc = nativekit.Service("kpub", settings=settings)
    try:
        first = await svc.publish(f"p-{unique}", Shipped(order_id="o"))
        second = await svc.publish(f"p-{unique}", Shipped(order_id="o"))
    finally:
        await svc.messaging.broker.aclose()
    assert (first.partition, first.offset, second.offset) == (0, 0, 1)


async def test_publish_first_used_after_startup_is_closed_at_shutdown() -> None:
    """A service that only publishes from a route still stops its broker on shutdown."""
    from nativekit.messaging import MemoryBroker

    svc = Service("late")
    closed: list[bool] = []

    class Recording(MemoryBroker):
        async def aclose(self) -> None:
            closed.append(True)

    await svc.startup(hook_sigterm=False)
    svc.messaging._broker = Recording()
    await svc.publish("late", Shipped(order_id="o"))
    await svc.shutdown()
    assert closed == [True]


@pytest.mark.kafka
async def test_concurrent_first_publishes_start_one_producer(
    kafka_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of publishes before the producer exists connects one pair of producers
    (the one that sends at once and the lingering one), not one each (the others were
    left unclosed, with their sender tasks destroyed pending)."""
    import aiokafka

    started: list[object] = []
    real_start = aiokafka.AIOKafkaProducer.start

    async def counting(self):  # type: ignore[no-untyped-def]
        started.append(self)
        await real_start(self)

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "start", counting)
    settings: Settings = kafka_settings(kafka_url)
    admin = KafkaBroker(settings)
    await admin.create_topics({f"burst-{unique}": 1})
    await admin.aclose()
    broker = KafkaBroker(settings)
    try:
        sent = await asyncio.gather(
            *(broker.send(f"burst-{unique}", b"x", key=b"k") for _ in range(20))
        )
    finally:
        await broker.aclose()
    assert len(started) == 2
    assert sorted(s.offset for s in sent) == list(range(20))


def test_the_producer_lingers_5_ms_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events published while many are in flight share record batches (the lingering
    producer: 5 ms, Kafka 4's default); NATIVEKIT_KAFKA_LINGER_SECONDS=0 sends each at
    once, and compression is passed on."""
    from nativekit.backends.kafka import producer_options

    url = {"url": "kafka://127.0.0.1:9092"}
    default = producer_options(Settings(kafka=url))
    assert (default["linger_ms"], default["compression_type"], default["acks"]) == (5, None, "all")
    monkeypatch.setenv("NATIVEKIT_KAFKA_LINGER_SECONDS", "0")
    monkeypatch.setenv("NATIVEKIT_KAFKA_COMPRESSION", "lz4")
    tuned = producer_options(Settings(kafka=url))
    assert (tuned["linger_ms"], tuned["compression_type"]) == (0, "lz4")
