"""Consumer throughput and publish latency on a real Kafka-protocol broker (and Redis).

50,000 JSON messages are produced once to a 4-partition topic; then, in one run,
each contender reads all of them in its own consumer group:

* ``raw``       aiokafka ``getmany`` loop, no processing (the ceiling)
* ``faststream`` a FastStream subscriber with a pydantic model (no dedup, logging off)
* ``naive``     aiokafka loop + JSON decode + one Redis ``SET NX`` per message + commits
* ``nativekit`` ``@svc.consumer``: pydantic decode, Redis idempotency (claim/finish per
  fetched batch), DONE marks and offset commits, with ``nativekit.tune_gc()`` while
  it runs, as docs/performance.md recommends
* ``nk-gc-default`` the same without ``tune_gc()``: the interpreter's own
  garbage-collector thresholds
* ``nativekit-pg`` (with ``--postgres``) ``nativekit`` with its dedup store on PostgreSQL
  (``NATIVEKIT_TEST_DATABASE_URL``, a schema of the run's own, dropped at the end)

Throughput is measured from the first handled message to the last (group joins,
which the broker delays by a fixed time, are excluded for everyone); each contender
runs BENCH_ROUNDS times (default 3, order rotated) and the median is reported. Publish latency:
one message in flight, nativekit ``svc.publish`` vs aiokafka ``send_and_wait``.

Usage: python -m nativekit.testing.servers -- python benchmarks/consumer_throughput.py [--quick]
(or set NATIVEKIT_TEST_KAFKA_URL / NATIVEKIT_TEST_REDIS_URL). Last line: one JSON object.
``--quick``: 2,000 messages, one round (a smoke run). The run's Redis keys and topics
are deleted at the end, also when it fails (the servers may be shared).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiokafka
import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit.backends.kafka import KafkaBroker as NkKafka
from nativekit.messaging._wire.envelope import build_headers
from nativekit.testing.servers import delete_topics

QUICK = "--quick" in sys.argv[1:]
N = 2000 if QUICK else int(os.environ.get("BENCH_MESSAGES", "50000"))
ROUNDS = 1 if QUICK else int(os.environ.get("BENCH_ROUNDS", "3"))
PARTITIONS = 4
KAFKA = os.environ.get("NATIVEKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
REDIS = os.environ.get("NATIVEKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: ``--postgres``: also the idempotent consumer with its DONE marks in PostgreSQL
POSTGRES = (
    os.environ.get("NATIVEKIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    if "--postgres" in sys.argv[1:]
    else None
)
SERVERS = KAFKA.partition("://")[2]
RUN = uuid.uuid4().hex[:8]
TOPIC = f"bench-{RUN}"
PUBLISH_TOPIC = f"bench-pub-{RUN}"
ROUND = [0]  # each round reads the topic again with fresh consumer groups


def group(name: str) -> str:
    return f"{name}-{RUN}-{ROUND[0]}"


class OrderPlaced(BaseModel):
    """The benchmark event."""

    order_id: str
    customer: str
    amount_cents: int
    items: list[str]


def settings(**extra: object) -> nativekit.Settings:
    return nativekit.Settings(
        environment="production",
        kafka={"url": KAFKA, "idempotent_producer": False},
        redis={"url": REDIS},
        telemetry={"log_level": "WARNING"},
        **extra,
    )


async def produce() -> None:
    broker = NkKafka(settings())
    await broker.create_topics({TOPIC: PARTITIONS})
    await broker.aclose()
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=SERVERS, linger_ms=20, acks=1)
    await producer.start()
    try:
        pending = []
        for i in range(N):
            event = OrderPlaced(
                order_id=f"o-{i}", customer=f"c-{i % 97}", amount_cents=i, items=["a", "b"]
            )
            _, headers = build_headers(content_type="application/json", event_type="OrderPlaced")
            pending.append(
                await producer.send(
                    TOPIC, event.model_dump_json().encode(), key=f"o-{i}".encode(), headers=headers
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class Clock:
    """From the first handled message to the N-th."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def tick(self, n: int = 1) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        self.count += n
        if self.count >= N and not self.done.is_set():
            self.last = time.perf_counter()
            self.done.set()

    def rate(self) -> float:
        return N / (self.last - self.first)


async def bench_raw() -> float:
    clock = Clock()
    consumer = aiokafka.AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=SERVERS,
        group_id=group("raw"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    await consumer.start()
    try:
        while not clock.done.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            n = sum(len(b) for b in batches.values())
            if n:
                clock.tick(n)
    finally:
        await consumer.stop()
    return clock.rate()


async def bench_faststream() -> float:
    from faststream.kafka import KafkaBroker

    clock = Clock()
    broker = KafkaBroker(SERVERS, logger=None)

    @broker.subscriber(TOPIC, group_id=group("fs"), auto_offset_reset="earliest")
    async def handle(event: OrderPlaced) -> None:
        clock.tick()

    await broker.start()
    try:
        await asyncio.wait_for(clock.done.wait(), 600)
    finally:
        await broker.stop()
    return clock.rate()


async def bench_naive() -> float:
    clock = Clock()
    redis = aioredis.Redis.from_url(REDIS)
    consumer = aiokafka.AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=SERVERS,
        group_id=group("naive"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not clock.done.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    event = OrderPlaced.model_validate_json(record.value)
                    message_id = dict(record.headers)["message-id"].decode()
                    if await redis.set(f"bench:{RUN}:naive:{message_id}", 1, nx=True, ex=3600):
                        _ = event.amount_cents
                    clock.tick()
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await redis.aclose()
    return clock.rate()


async def bench_nativekit(*, tune_gc: bool = True) -> float:
    clock = Clock()
    svc = nativekit.Service("bench", settings=settings())
    handled = 0

    @svc.consumer(TOPIC, group=group("nk" if tune_gc else "nk-variant"))
    async def handle(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    consumer = svc.messaging.consumers[0]
    consumer.observers.append(lambda item: clock.tick())  # after DONE and the commit
    await svc.startup(hook_sigterm=False)
    if tune_gc:
        nativekit.tune_gc()
    try:
        await asyncio.wait_for(clock.done.wait(), 600)
    finally:
        await svc.shutdown()
        nativekit.restore_gc()
    assert handled == N, handled
    return clock.rate()


async def bench_nativekit_pg() -> float:
    """nativekit's idempotent consumer with its dedup store on PostgreSQL."""
    clock = Clock()
    database = {"url": POSTGRES, "schema_name": f"bench_{RUN}", "migrate_on_start": True}
    svc = nativekit.Service("bench", settings=settings(database=database))
    handled = 0

    @svc.consumer(TOPIC, group=group("nk-pg"))
    async def handle(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    svc.messaging.consumers[0].observers.append(lambda item: clock.tick())
    await svc.startup(hook_sigterm=False)
    nativekit.tune_gc()
    try:
        await asyncio.wait_for(clock.done.wait(), 600)
    finally:
        await svc.shutdown()
        nativekit.restore_gc()
    assert handled == N, handled
    return clock.rate()


async def drop_schema() -> None:
    """Drop the PostgreSQL contender's schema (its DONE marks)."""
    if POSTGRES is None:
        return
    import asyncpg

    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS bench_{RUN} CASCADE")
    finally:
        await connection.close()


async def cleanup() -> None:
    """Delete this run's Redis keys: the naive loop's and nativekit's dedup records."""
    redis = aioredis.Redis.from_url(REDIS)
    try:
        for pattern in (f"bench:{RUN}:*", f"nk:dedup:{{nk*-{RUN}-*"):
            batch = [k async for k in redis.scan_iter(match=pattern, count=10_000)]
            for i in range(0, len(batch), 1000):
                await redis.delete(*batch[i : i + 1000])
    finally:
        await redis.aclose()


async def run() -> None:
    """Measure, then delete the run's keys and topics whatever happened."""
    try:
        await main()
    finally:
        await cleanup()
        await drop_schema()
        await delete_topics(KAFKA, [TOPIC, PUBLISH_TOPIC])


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def bench_publish(count: int = 200 if QUICK else 2000) -> dict[str, float]:
    topic = PUBLISH_TOPIC
    svc = nativekit.Service("bench-pub", settings=settings())
    await svc.messaging.broker.create_topics({topic: 1})
    await svc.startup(hook_sigterm=False)
    event = OrderPlaced(order_id="o", customer="c", amount_cents=1, items=["a"])
    nk: list[float] = []
    try:
        for i in range(count):
            started = time.perf_counter()
            await svc.publish(topic, event, key=f"k{i}")
            nk.append(time.perf_counter() - started)
    finally:
        await svc.shutdown()
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=SERVERS, acks="all")
    await producer.start()
    raw: list[float] = []
    try:
        payload = event.model_dump_json().encode()
        for i in range(count):
            started = time.perf_counter()
            await producer.send_and_wait(topic, payload, key=f"k{i}".encode())
            raw.append(time.perf_counter() - started)
    finally:
        await producer.stop()
    nk50, nk99 = percentiles(nk)
    raw50, raw99 = percentiles(raw)
    return {"nk_p50_ms": nk50, "nk_p99_ms": nk99, "raw_p50_ms": raw50, "raw_p99_ms": raw99}


async def main() -> None:
    logging.disable(logging.WARNING)
    print(f"producing {N} messages to {TOPIC} ({PARTITIONS} partitions) at {KAFKA}", flush=True)
    await produce()
    contenders = (
        ("raw", bench_raw),
        ("faststream", bench_faststream),
        ("naive", bench_naive),
        ("nativekit", bench_nativekit),
        # the same with the interpreter's garbage-collector thresholds (no tune_gc)
        ("nk-gc-default", lambda: bench_nativekit(tune_gc=False)),
    )
    if POSTGRES is not None:
        contenders += (("nativekit-pg", bench_nativekit_pg),)
    samples: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for round_no in range(ROUNDS):
        ROUND[0] = round_no
        # rotate the order so no contender always runs first (warm caches, broker state)
        turn = round_no % len(contenders)
        for name, bench in contenders[turn:] + contenders[:turn]:
            samples[name].append(await bench())
            print(f"round {round_no + 1} {name:>11}: {samples[name][-1]:>10,.0f} msg/s", flush=True)
        await cleanup()
    results = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in results.items():
        print(f"median {name:>11}: {value:>10,.0f} msg/s", flush=True)
    latency = await bench_publish()
    print(
        f"publish latency (1 in flight): nativekit p50 {latency['nk_p50_ms']:.2f} ms, "
        f"p99 {latency['nk_p99_ms']:.2f} ms; aiokafka send_and_wait p50 "
        f"{latency['raw_p50_ms']:.2f} ms, p99 {latency['raw_p99_ms']:.2f} ms"
    )
    summary = {
        "messages": N,
        "rounds": ROUNDS,
        "partitions": PARTITIONS,
        **{f"{k}_msgs_per_s": round(v) for k, v in results.items()},
        "nativekit_vs_faststream": round(results["nativekit"] / results["faststream"], 2),
        "nativekit_vs_naive_dedup": round(results["nativekit"] / results["naive"], 2),
        "nativekit_vs_raw": round(results["nativekit"] / results["raw"], 3),
        "nk_gc_default_vs_faststream": round(results["nk-gc-default"] / results["faststream"], 2),
        **{k: round(v, 3) for k, v in latency.items()},
        "publish_p50_vs_raw": round(latency["nk_p50_ms"] / latency["raw_p50_ms"], 2),
    }
    if "nativekit-pg" in results:
        summary["nativekit_pg_vs_faststream"] = round(
            results["nativekit-pg"] / results["faststream"], 2
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(run())
