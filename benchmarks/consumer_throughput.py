"""Consumer throughput and publish latency on a real Kafka-protocol broker (and Redis).

50,000 JSON messages are produced once to each of four 4-partition topics, one per
way a user's topic gets written (the *topic kinds*):

* ``aiokafka``  aiokafka ``send`` in batches (``linger_ms=20``, acks=1) with nativekit's
  headers from ``build_headers`` (message id, event type, content type, time)
* ``plain``     aiokafka ``send`` (``linger_ms=5``), no headers at all: the dedup key is
  the record's position
* ``publish``   ``svc.publish`` with every event in flight at once (``asyncio.gather``),
  the service's default producer settings
* ``relay``     the outbox relay: 100 sagas at a time, each one step that calls
  ``outbox_publish``, published by the relay with the service's defaults

Then, in one run, each contender reads every topic kind in its own consumer group:

* ``raw``       aiokafka ``getmany`` loop, no processing (the ceiling)
* ``faststream`` a FastStream subscriber with a pydantic model (no dedup, logging off)
* ``naive``     aiokafka loop + JSON decode + one Redis ``SET NX`` per message + commits
* ``nativekit`` ``@svc.consumer``: pydantic decode, Redis idempotency (claim/finish per
  fetched batch), DONE marks and offset commits, with ``nativekit.tune_gc()`` while
  it runs, as docs/performance.md recommends
* ``nk-gc-default`` the same without ``tune_gc()``: the interpreter's own
  garbage-collector thresholds
* ``nk-wait`` (with ``--fetch-wait S``) ``nativekit`` with ``fetch_max_wait`` S seconds
  instead of the default 0.5 (NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS)
* ``nativekit-pg`` (with ``--postgres``) ``nativekit`` with its dedup store on PostgreSQL
  (``NATIVEKIT_TEST_DATABASE_URL``, a schema of the run's own, dropped at the end); its
  line also gives the CPU per message of its PostgreSQL backends (``/proc``, found by
  the client ports of its connections), of all PostgreSQL processes, of the broker and
  of the whole machine, and its ``claim_many``/``finish_many`` calls: how many, keys
  per call, mean latency and the share of the window with one in flight.
  ``BENCH_PG_VARIANTS='{"win4k": {"max_in_flight": 4000}}'`` adds variants (``pg-win4k``)
  with other ``consumer`` settings, in the same run

Throughput is measured from the first handled message to the last (group joins,
which the broker delays by a fixed time, are excluded for everyone); each contender
runs BENCH_ROUNDS times (default 3, order rotated) and the median is reported, with
the process's CPU time per message over the same window (less sensitive to other
work on the machine than the rate). The record batches of each topic kind are
counted (records per batch, bytes per record). Publish latency:
one message in flight, nativekit ``svc.publish`` vs aiokafka ``send_and_wait``.

Usage: python -m nativekit.testing.servers -- python benchmarks/consumer_throughput.py [--quick]
(or set NATIVEKIT_TEST_KAFKA_URL / NATIVEKIT_TEST_REDIS_URL). Last line: one JSON object.
``--quick``: 2,000 messages, one round (a smoke run). BENCH_ONLY=faststream,nativekit
runs only the named contenders. The run's Redis keys and topics
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiokafka
import harness
import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit import SagaContext
from nativekit.backends.kafka import KafkaBroker as NkKafka
from nativekit.messaging._wire.envelope import build_headers
from nativekit.saga import outbox_publish
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
#: ``--fetch-wait S``: also nativekit with ``consumer.fetch_max_wait_seconds=S`` (``nk-wait``)
FETCH_WAIT = (
    float(sys.argv[sys.argv.index("--fetch-wait") + 1]) if "--fetch-wait" in sys.argv else None
)
#: BENCH_ONLY=faststream,nativekit,...: run only these contenders
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
SERVERS = KAFKA.partition("://")[2]
RUN = uuid.uuid4().hex[:8]
KINDS = ("aiokafka", "plain", "publish", "relay")
TOPICS = {kind: f"bench-{kind}-{RUN}" for kind in KINDS}
PUBLISH_TOPIC = f"bench-pub-{RUN}"
ROUND = [0]  # each round reads the topics again with fresh consumer groups
TOPIC = [TOPICS["aiokafka"]]  # the topic kind being read


def group(name: str) -> str:
    kind = TOPIC[0].split("-")[1]
    return f"{name}-{kind}-{RUN}-{ROUND[0]}"


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
        saga={"key_prefix": f"bench:{RUN}:saga", "outbox_relay": True},
        **extra,
    )


def event(i: int) -> OrderPlaced:
    return OrderPlaced(order_id=f"o-{i}", customer=f"c-{i % 97}", amount_cents=i, items=["a", "b"])


async def produce_aiokafka(topic: str, *, headers: bool, linger_ms: int) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=SERVERS, linger_ms=linger_ms, acks=1)
    await producer.start()
    try:
        pending = []
        for i in range(N):
            extra = None
            if headers:
                _, extra = build_headers(content_type="application/json", event_type="OrderPlaced")
            pending.append(
                await producer.send(
                    topic, event(i).model_dump_json().encode(), key=f"o-{i}".encode(), headers=extra
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_publish(topic: str) -> None:
    svc = nativekit.Service("bench-publisher", settings=settings())
    await svc.startup(hook_sigterm=False)
    try:
        await asyncio.gather(*(svc.publish(topic, event(i), key=f"o-{i}") for i in range(N)))
    finally:
        await svc.shutdown()


async def produce_relay(topic: str) -> None:
    svc = nativekit.Service("bench-relay", settings=settings())
    emit = svc.saga("emit")

    @emit.step()
    async def write(ctx: SagaContext[Any]) -> None:
        i = ctx.data["i"]
        outbox_publish(ctx, topic, event(i), key=f"o-{i}")

    await svc.startup(hook_sigterm=False)
    try:
        next_i = 0

        async def worker() -> None:
            nonlocal next_i
            while next_i < N:
                i, next_i = next_i, next_i + 1
                await (await svc.sagas.start("emit", {"i": i})).wait(120)

        await asyncio.gather(*(worker() for _ in range(100)))
        # the relay publishes after the step's write: wait for the last entries to go out
        # (Tansu's end offsets lag the records it holds, so the relay's count is read)
        relay = svc._saga_commands.relay
        assert relay is not None
        while relay.published < N:  # noqa: ASYNC110 - the relay has no event for it
            await asyncio.sleep(0.05)
    finally:
        await svc.shutdown()


async def produce() -> None:
    broker = NkKafka(settings())
    await broker.create_topics({topic: PARTITIONS for topic in TOPICS.values()})
    await broker.aclose()
    for kind, produce_kind in (
        ("aiokafka", lambda t: produce_aiokafka(t, headers=True, linger_ms=20)),
        ("plain", lambda t: produce_aiokafka(t, headers=False, linger_ms=5)),
        ("publish", produce_publish),
        ("relay", produce_relay),
    ):
        started = time.perf_counter()
        await produce_kind(TOPICS[kind])
        print(f"produced {kind} in {time.perf_counter() - started:.1f} s", flush=True)


async def batch_shape(topic: str) -> dict[str, float]:
    """Records per record batch and bytes per record of ``topic``, read from the log.

    A diagnostic: it counts the batches aiokafka's fetcher parses by wrapping the
    ``MemoryRecords`` name its module reads, for this read only.
    """
    import aiokafka.consumer.fetcher as fetcher

    counts = {"batches": 0, "bytes": 0}
    original = fetcher.MemoryRecords

    class Counting:
        def __init__(self, data: bytes) -> None:
            self.inner = original(data)
            counts["bytes"] += len(data)

        def next_batch(self) -> Any:
            batch = self.inner.next_batch()
            counts["batches"] += batch is not None
            return batch

        def has_next(self) -> bool:
            return bool(self.inner.has_next())

        def size_in_bytes(self) -> int:
            return int(self.inner.size_in_bytes())

    fetcher.MemoryRecords = Counting
    consumer = aiokafka.AIOKafkaConsumer(
        topic,
        bootstrap_servers=SERVERS,
        group_id=f"shape-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    records = 0
    try:
        await consumer.start()
        while records < N:
            got = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not got:
                break
            records += sum(len(v) for v in got.values())
    finally:
        await consumer.stop()
        fetcher.MemoryRecords = original
    return {
        "records_per_batch": round(records / max(counts["batches"], 1), 1),
        "bytes_per_record": round(counts["bytes"] / max(records, 1)),
    }


TICK = os.sysconf("SC_CLK_TCK")


#: the command name of each pid :func:`process_cpu` read
NAMES: dict[int, str] = {}


def process_cpu(names: tuple[str, ...] = ("postgres", "tansu")) -> dict[int, float]:
    """User+system CPU seconds of every process named one of ``names`` (``/proc``), by
    pid; under the key -1 the whole machine's busy CPU seconds (``/proc/stat``)."""
    out: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        if name.startswith(names):
            fields = rest.split()
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
            NAMES[int(stat.parent.name)] = name
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    out[-1] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK  # all but idle and iowait
    return out


def pids_named(name: str) -> set[int]:
    """The pids of processes called ``name`` that :func:`process_cpu` read."""
    return {pid for pid, found in NAMES.items() if found.startswith(name)}


class Clock:
    """From the first handled message to the N-th, with the CPU of the PostgreSQL and
    broker processes and of the whole machine over the same window."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.first_cpu = 0.0
        self.last = self.last_cpu = 0.0
        self.pg_first: dict[int, float] = {}
        self.pg_last: dict[int, float] = {}
        self.done = asyncio.Event()
        LAST_CLOCK[:] = [self]

    def tick(self, n: int = 1) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()
            self.pg_first = process_cpu()
        self.count += n
        if self.count >= N and not self.done.is_set():
            self.last = time.perf_counter()
            self.last_cpu = time.process_time()
            self.pg_last = process_cpu()
            self.done.set()

    def server_us(self, pids: set[int]) -> float:
        """CPU of processes ``pids`` per message over the window (``{-1}``: the machine's)."""
        total = sum(
            cpu - self.pg_first.get(pid, 0.0)  # a backend started in the window: from 0
            for pid, cpu in self.pg_last.items()
            if pid in pids
        )
        return total / N * 1e6

    def rate(self) -> float:
        return N / (self.last - self.first)

    def cpu_us(self) -> float:
        """Process CPU time per message over the measured window."""
        return (self.last_cpu - self.first_cpu) / N * 1e6


LAST_CLOCK: list[Clock] = []


async def wait_for_clock(clock: Clock, state: Any, limit: float = 600) -> None:
    """Wait for the N-th message, saying every 30 s how far the contender got."""
    deadline = time.monotonic() + limit
    while not clock.done.is_set():
        try:
            await asyncio.wait_for(clock.done.wait(), 30)
        except TimeoutError:
            print(f"  still waiting: {clock.count} of {N} ({state()})", flush=True)
            if time.monotonic() > deadline:
                raise


async def bench_raw() -> float:
    clock = Clock()
    consumer = aiokafka.AIOKafkaConsumer(
        TOPIC[0],
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

    @broker.subscriber(TOPIC[0], group_id=group("fs"), auto_offset_reset="earliest")
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
        TOPIC[0],
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
                    found = dict(record.headers).get("message-id")
                    message_id = (
                        found.decode()
                        if found is not None
                        else f"{record.topic}:{record.partition}:{record.offset}"
                    )
                    if await redis.set(f"bench:{RUN}:naive:{message_id}", 1, nx=True, ex=3600):
                        _ = event.amount_cents
                    clock.tick()
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await redis.aclose()
    return clock.rate()


async def bench_nativekit(*, tune_gc: bool = True, fetch_wait: float | None = None) -> float:
    clock = Clock()
    extra = {} if fetch_wait is None else {"consumer": {"fetch_max_wait_seconds": fetch_wait}}
    svc = nativekit.Service("bench", settings=settings(**extra))
    handled = 0
    name = "nk" if tune_gc else "nk-variant"

    @svc.consumer(TOPIC[0], group=group(name if fetch_wait is None else "nk-wait"))
    async def handle(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    consumer = svc.messaging.consumers[0]
    consumer.observers.append(lambda item: clock.tick())  # after DONE and the commit
    await svc.startup(hook_sigterm=False)
    if tune_gc:
        nativekit.tune_gc()
    try:
        await wait_for_clock(clock, lambda: f"handled {handled}")
    finally:
        await svc.shutdown()
        nativekit.restore_gc()
    assert handled == N, handled
    return clock.rate()


#: per nativekit-pg run: its backends' CPU, all PostgreSQL's, and the store's calls
PG_STATS: list[dict[str, float]] = []


async def backend_pids() -> set[int]:
    """The server pids of this process's connections to PostgreSQL (by client port)."""
    import asyncpg
    import psutil

    ports = [
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == 5432
    ]
    connection = await asyncpg.connect(POSTGRES)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])", ports
        )
    finally:
        await connection.close()
    return {int(r["pid"]) for r in rows}


class StoreCalls:
    """Counts and times a dedup store's claim_many and finish_many (a diagnostic)."""

    def __init__(self, store: Any) -> None:
        self.stats = {f"{op}_{k}": 0.0 for op in ("claim", "finish") for k in ("n", "keys", "s")}
        self.spans: dict[str, list[tuple[float, float]]] = {"claim": [], "finish": []}
        for op in ("claim", "finish"):
            setattr(store, f"{op}_many", self.timed(op, getattr(store, f"{op}_many")))

    def timed(self, op: str, call: Any) -> Any:
        stats, spans = self.stats, self.spans[op]

        async def timed_call(items: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(items, **kwargs)
            finally:
                stats[f"{op}_n"] += 1
                stats[f"{op}_keys"] += len(items)
                stats[f"{op}_s"] += time.perf_counter() - started
                spans.append((started, time.perf_counter()))

        return timed_call

    def busy(self, op: str, first: float, last: float) -> float:
        """The share of ``first``..``last`` with at least one ``op`` in flight."""
        covered, until = 0.0, first
        for start, end in sorted(self.spans[op]):
            start, end = max(start, until), min(end, last)
            if end > start:
                covered += end - start
                until = end
        return covered / (last - first)


async def bench_nativekit_pg(
    consumer_settings: dict[str, Any] | None = None, name: str = "nk-pg"
) -> float:
    """nativekit's idempotent consumer with its dedup store on PostgreSQL (with
    ``consumer_settings``: a variant's ``consumer`` settings)."""
    clock = Clock()
    database = {"url": POSTGRES, "schema_name": f"bench_{RUN}", "migrate_on_start": True}
    extra: dict[str, Any] = {"database": database}
    if consumer_settings:
        extra["consumer"] = consumer_settings
    svc = nativekit.Service("bench", settings=settings(**extra))
    handled = 0

    @svc.consumer(TOPIC[0], group=group(name))
    async def handle(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    consumer = svc.messaging.consumers[0]
    consumer.observers.append(lambda item: clock.tick())
    await svc.startup(hook_sigterm=False)
    calls = StoreCalls(consumer.store)
    nativekit.tune_gc()
    try:
        await asyncio.wait_for(clock.done.wait(), 600)
        pids = await backend_pids()
    finally:
        await svc.shutdown()
        nativekit.restore_gc()
    assert handled == N, handled
    stats = calls.stats
    PG_STATS[:] = [
        {
            "server_us": clock.server_us(pids),
            "all_pg_us": clock.server_us(pids_named("postgres")),
            "broker_us": clock.server_us(pids_named("tansu")),
            "machine_us": clock.server_us({-1}),
            "backends": len(pids),
            "claim_keys": stats["claim_keys"] / max(stats["claim_n"], 1),
            "claim_ms": stats["claim_s"] / max(stats["claim_n"], 1) * 1000,
            "claims": stats["claim_n"],
            "finish_keys": stats["finish_keys"] / max(stats["finish_n"], 1),
            "finish_ms": stats["finish_s"] / max(stats["finish_n"], 1) * 1000,
            "finishes": stats["finish_n"],
            "claim_busy": calls.busy("claim", clock.first, clock.last),
            "finish_busy": calls.busy("finish", clock.first, clock.last),
        }
    ]
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
        for pattern in (f"bench:{RUN}:*", f"{{bench:{RUN}:*", f"nk:dedup:{{nk*-{RUN}-*"):
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
        await delete_topics(KAFKA, [*TOPICS.values(), PUBLISH_TOPIC])


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
    print(f"producing {N} messages to each of {list(TOPICS.values())} at {KAFKA}", flush=True)
    await produce()
    shapes = {kind: await batch_shape(topic) for kind, topic in TOPICS.items()}
    for kind, shape in shapes.items():
        print(f"topic kind {kind:>9}: {shape}", flush=True)
    contenders = (
        ("raw", bench_raw),
        ("faststream", bench_faststream),
        ("naive", bench_naive),
        ("nativekit", bench_nativekit),
        # the same with the interpreter's garbage-collector thresholds (no tune_gc)
        ("nk-gc-default", lambda: bench_nativekit(tune_gc=False)),
    )[: 4 if QUICK else None]  # a smoke run: one nativekit variant (each is a group join)
    if FETCH_WAIT is not None:
        contenders += (("nk-wait", lambda: bench_nativekit(fetch_wait=FETCH_WAIT)),)
    if POSTGRES is not None:
        contenders += (("nativekit-pg", bench_nativekit_pg),)
        # BENCH_PG_VARIANTS='{"win4k": {"max_in_flight": 4000}}': also these variants
        for variant, consumer in json.loads(os.environ.get("BENCH_PG_VARIANTS", "{}")).items():
            contenders += (
                (f"pg-{variant}", lambda c=consumer, v=variant: bench_nativekit_pg(c, f"pg-{v}")),
            )
    if ONLY:
        contenders = tuple(c for c in contenders if c[0] in ONLY)
    rates: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    servers: dict[str, list[float]] = {}
    for round_no in range(ROUNDS):
        ROUND[0] = round_no
        # rotate the order so no contender always runs first (warm caches, broker state)
        turn = round_no % len(contenders)
        for kind, topic in TOPICS.items():
            TOPIC[0] = topic
            for name, bench in contenders[turn:] + contenders[:turn]:
                rates.setdefault((kind, name), []).append(await bench())
                cpus.setdefault((kind, name), []).append(LAST_CLOCK[0].cpu_us())
                extra = f" machine {LAST_CLOCK[0].server_us({-1}):.1f} us/msg"
                if name == "nativekit-pg" or name.startswith("pg-"):
                    pg = PG_STATS[0]
                    servers.setdefault((kind, name), []).append(pg["server_us"])
                    extra = (
                        f" server {pg['server_us']:.1f} (all postgres {pg['all_pg_us']:.1f}) "
                        f"broker {pg['broker_us']:.1f} machine {pg['machine_us']:.1f} "
                        f"us/msg; claims {pg['claims']:.0f} x {pg['claim_keys']:.0f} keys "
                        f"{pg['claim_ms']:.1f} ms, finishes {pg['finishes']:.0f} x "
                        f"{pg['finish_keys']:.0f} keys {pg['finish_ms']:.1f} ms; busy: claim "
                        f"{pg['claim_busy']:.0%} finish {pg['finish_busy']:.0%}"
                    )
                print(
                    f"round {round_no + 1} {kind:>9} {name:>13}: "
                    f"{rates[kind, name][-1]:>10,.0f} msg/s "
                    f"{cpus[kind, name][-1]:>7.1f} us CPU/msg{extra} "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            await cleanup()
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    print()
    print(f"{'kind':<10} {'contender':<14} {'msg/s':>10} {'us CPU/msg':>11} {'x FastStream':>13}")
    for (kind, name), value in rate.items():
        ratio = value / rate[kind, "faststream"]
        server = (
            f" server {statistics.median(servers[kind, name]):.1f} us/msg"
            if name == "nativekit-pg" or name.startswith("pg-")
            else ""
        )
        print(
            f"{kind:<10} {name:<14} {value:>10,.0f} {cpu[kind, name]:>11.1f} {ratio:>12.2f}x"
            f"{server}"
        )
    latency = await bench_publish()
    print(
        f"publish latency (1 in flight): nativekit p50 {latency['nk_p50_ms']:.2f} ms, "
        f"p99 {latency['nk_p99_ms']:.2f} ms; aiokafka send_and_wait p50 "
        f"{latency['raw_p50_ms']:.2f} ms, p99 {latency['raw_p99_ms']:.2f} ms"
    )
    if (KINDS[0], "nativekit") not in rate:  # BENCH_ONLY without nativekit: no headline
        return
    worst = min(KINDS, key=lambda k: rate[k, "nativekit"] / rate[k, "faststream"])
    rows = [
        harness.row(
            f"idempotent consumer, topic written by {kind}",
            unit="msg/s",
            figure=rate[kind, "nativekit"],
            peer="FastStream",
            peer_figure=rate[kind, "faststream"],
            target=5.0,
        )
        for kind in KINDS
        if kind != worst
    ]
    rows += [
        harness.row(
            f"idempotent consumer, dedup on PostgreSQL, topic written by {kind}",
            unit="msg/s",
            figure=rate[kind, "nativekit-pg"],
            peer="FastStream",
            peer_figure=rate[kind, "faststream"],
            target=3.0,
        )
        for kind in KINDS
        if (kind, "nativekit-pg") in rate
    ]
    harness.headline(
        "consumer_throughput",
        what=f"idempotent consumer, topic written by {worst} (the lowest ratio)",
        unit="msg/s",
        figure=rate[worst, "nativekit"],
        peer="FastStream",
        peer_figure=rate[worst, "faststream"],
        target=5.0,
        rows=rows,
        details={
            "messages": N,
            "rounds": ROUNDS,
            "partitions": PARTITIONS,
            "topic_kinds": shapes,
            "msgs_per_s": {f"{k}/{n}": round(v) for (k, n), v in rate.items()},
            "cpu_us_per_msg": {f"{k}/{n}": round(v, 1) for (k, n), v in cpu.items()},
            "pg_server_us_per_msg": {
                f"{k}/{n}": round(statistics.median(v), 1) for (k, n), v in servers.items()
            },
            **{k: round(v, 3) for k, v in latency.items()},
            "publish_p50_vs_raw": round(latency["nk_p50_ms"] / latency["raw_p50_ms"], 2),
        },
    )


if __name__ == "__main__":
    asyncio.run(run())
