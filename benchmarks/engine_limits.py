"""What one unit of each engine takes on this machine, for the capacity model
(docs/scaling.md): one Redis server (one Redis Cluster shard) and one Kafka partition.

    python benchmarks/engine_limits.py [--quick]

Redis: a private ``redis-server`` on a free port, driven by ``redis-benchmark`` (C,
50 connections, pipelines of 16), for plain ``SET`` and for a Lua script shaped like
a saga transition (``HSET`` of the record, ``ZADD`` to an index and ``XADD`` to the
outbox stream, all under one hash tag). Both run in the same process tree on the
same two cores, so the figures are a floor for a dedicated server.

Kafka: one topic of one partition on Tansu (the test broker, memory storage,
started here unless NATIVEKIT_TEST_KAFKA_URL is set), 300-byte messages produced by
one aiokafka producer (``linger_ms=5``, acks=all) and read back by one consumer. A
Python client is part of each figure; the broker may take more from several clients.

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

import harness

from nativekit.testing import servers

TRANSITION = (
    "redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'step', ARGV[1]) "
    "redis.call('ZADD', KEYS[2], ARGV[1], KEYS[1]) "
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '10000', '*', 'e', ARGV[1]) return 1"
)


def redis_benchmark(port: int, requests: int, *command: str) -> float:
    """Requests/s that ``redis-benchmark`` reports for one command."""
    options = ["-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", "50"]
    options += ["-P", "16", "-r", "100000", "--csv"]
    out = subprocess.run(
        ["redis-benchmark", *options, *command], check=True, capture_output=True, text=True
    ).stdout
    rows = [line for line in out.splitlines() if line and not line.startswith('"test"')]
    return float(re.findall(r'"([0-9.]+)"', rows[-1])[0])


def redis_limits(requests: int) -> dict[str, float]:
    """Plain SETs/s and transition-shaped script calls/s of one private Redis."""
    server = servers.start_redis(reuse=False)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    try:
        tag = "{s1}"
        set_rate = redis_benchmark(port, requests, "SET", f"{tag}:k:__rand_int__", "v")
        script_rate = redis_benchmark(
            port, requests, "EVAL", TRANSITION, "3",
            f"{tag}:saga:__rand_int__", f"{tag}:index", f"{tag}:outbox", "__rand_int__",
        )  # fmt: skip
    finally:
        server.stop()
    return {"redis_set_per_s": set_rate, "redis_transition_script_per_s": script_rate}


async def kafka_limits(url: str, messages: int) -> dict[str, float]:
    """Messages/s one producer puts into one partition and one consumer reads back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = url.partition("://")[2]
    topic = f"bench-limits-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    payload = os.urandom(150).hex().encode()  # 300 bytes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        began = time.perf_counter()
        futures = []
        for n in range(messages):
            futures.append(await producer.send(topic, payload, key=str(n % 100).encode()))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        produced = messages / (time.perf_counter() - began)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        seen, began = 0, time.perf_counter()
        while seen < messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(records) for records in batches.values())
        consumed = messages / (time.perf_counter() - began)
    finally:
        await consumer.stop()
        servers.delete_topics_now(url, [topic])
    return {"kafka_partition_produce_per_s": produced, "kafka_partition_consume_per_s": consumed}


def main() -> None:
    """Measure both engines, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    args = parser.parse_args()
    figures: dict[str, Any] = redis_limits(20_000 if args.quick else 1_000_000)
    kafka = servers.start_kafka()
    try:
        figures |= asyncio.run(kafka_limits(kafka.url, 2_000 if args.quick else 100_000))
    finally:
        kafka.stop()
    for name, value in figures.items():
        print(f"{name:36} {value:>12,.0f}")
    figures = {name: round(value) for name, value in figures.items()}
    print(
        json.dumps(
            {
                "benchmark": "engine_limits",
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": harness.machine(),
                "reference_loop_s": harness.loop_seconds(),
                "load": round(os.getloadavg()[0], 2),
                **figures,
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
