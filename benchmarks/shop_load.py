"""Load on the example shop: three processes on real Redis and Kafka.

    python benchmarks/shop_load.py [--concurrency 50] [--seconds 20] [--quick] [--redis-cluster]
                                   [--replicas N] [--private-redis]
                                   [--profile DIR]
    # BENCH_FETCH_WAIT_MS (30): the services' NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS, in ms

Places orders at fixed concurrency with ``Prefer: wait=5`` (polling GET when an
order is not final yet), reports orders/s and p50/p99 time to a final status,
checks the invariants at rest, and, for scale, the same load generator's rate
on a cached product read (``GET /inventory/products/{sku}``) of the same stack.
Uses NATIVEKIT_TEST_REDIS_URL / NATIVEKIT_TEST_KAFKA_URL, else starts servers;
``--redis-cluster`` starts a private 3-master Redis Cluster instead and also reports
the Redis commands per order (``INFO commandstats`` of its masters, nothing else
runs on them). ``--replicas N`` runs N replicas of each service (topics of
``max(6, 2N)`` partitions), the load generator spreading orders over the orders
replicas; CPU per order is then summed per service (docs/scaling.md).
``--profile DIR`` samples each service process with py-spy (the ``bench`` extra) over the
timed phase and writes one flame graph per service, ``DIR/shop-<service>.svg``.
CPU per order is each process's user + system CPU time over the timed phase divided by
the orders that ended in it (``cpu_ms_per_order``; Redis and Kafka count only when this
script or the ``nativekit.testing.servers`` wrapper around it started them, never other
servers on the host, whose CPU is other jobs' on a shared machine; ``--private-redis``
starts a Redis of the run's own rather than reuse the local one, so that its CPU per
order is the shop's alone).
The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1]))

import harness

from examples.shop.cluster import (
    Cluster,
    create_topics,
    replica_ports,
    service_of,
    shop_topics,
    start_replicas,
)
from examples.shop.models import payment_id_for
from nativekit.testing import servers

SKUS = 8
STOCK = 1_000_000
TOKENS = ["tok_visa"] * 18 + ["tok_decline", "tok_fail"]
IDLE_SECONDS = 3.0


#: local server processes whose CPU is counted (filled once the servers run)
SERVERS: dict[str, list[int]] = {}
#: ports of the private Redis Cluster's nodes (--redis-cluster)
CLUSTER_PORTS: list[int] = []


def commandstats() -> dict[str, int]:
    """Calls per command summed over the private cluster's nodes (replicas count nothing:
    replication is not a command call)."""
    from nativekit.testing._cluster import command

    calls: dict[str, int] = {}
    for port in CLUSTER_PORTS:
        try:
            text = str(command(port, "INFO", "commandstats"))
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[8:].partition(":")
                count = int(rest.split(",")[0].split("=")[1])
                calls[name] = calls.get(name, 0) + count
    return calls


def delete_keys(redis_url: str, tag: str) -> None:
    """Remove the run's keys (shop data, sagas, cache, dedup marks) from Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])
    client.close()


async def fetch(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Any:
    """One request; the JSON body (or None for a 404)."""
    async with http.request(method, path, **kwargs) as response:
        if response.status == 404:
            return None
        response.raise_for_status()
        return await response.json()


def instances(cluster: Cluster, service: str) -> list[str]:
    """The running instances of one service: ``orders``, or ``orders-1``, ``orders-2``..."""
    return sorted(name for name in cluster.ports if service_of(name) == service)


def session(
    cluster: Cluster, service: str, concurrency: int, replica: int = 0
) -> aiohttp.ClientSession:
    """A client session for one service (its ``replica``-th instance when replicated)."""
    names = instances(cluster, service)
    return aiohttp.ClientSession(
        base_url=cluster.url(names[replica % len(names)]),
        connector=aiohttp.TCPConnector(limit=concurrency),
    )


def start_cluster(
    stack: ExitStack,
    tag: str,
    log_dir: Path,
    redis_cluster: bool,
    replicas: int = 1,
    private_redis: bool = False,
) -> Cluster:
    """Servers (reused when configured) and the three services, stopped by ``stack``."""
    redis: Any
    if redis_cluster:
        redis = servers.start_redis_cluster(reuse=False)
        CLUSTER_PORTS.extend(node.port for node in redis.nodes)
    else:
        redis = servers.start_redis(reuse=not private_redis)
    stack.callback(redis.stop)
    kafka = servers.start_kafka()
    stack.callback(kafka.stop)
    SERVERS.update(started_pids(redis, kafka))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "SHOP_"))}
    env.update(
        NATIVEKIT_REDIS_URL=redis.url,
        NATIVEKIT_KAFKA_URL=kafka.url,
        NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER="false",
        NATIVEKIT_HTTP_ACCESS_LOG="false",
        NATIVEKIT_TELEMETRY_LOG_LEVEL="WARNING",
        NATIVEKIT_REDIS_MAX_CONNECTIONS="128",
        # Tansu holds a fetch for the whole wait: short enough for command replies, long
        # enough that idle fetches (each consumer polls) do not eat the two cores
        NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS=str(
            int(os.environ.get("BENCH_FETCH_WAIT_MS", "30")) / 1000
        ),
        SHOP_KEY_PREFIX=f"bench-{tag}",
        SHOP_TOPIC_PREFIX=f"bench-{tag}.",
        SHOP_SEED_PRODUCTS="0",
        PYTHONPATH=str(Path(__file__).parents[1]),
    )
    # the shop's topics and orders' reply topic ("orders-<tag>.replies")
    stack.callback(servers.delete_topics_now, kafka.url, [f"bench-{tag}.", f"-{tag}."])
    if not redis_cluster:  # a private cluster goes away with its keys
        stack.callback(delete_keys, redis.url, tag)
    if replicas > 1:
        topics = shop_topics(env, orders_service=f"orders-{tag}")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # it runs its own loop
            pool.submit(create_topics, kafka.url, topics, max(6, 2 * replicas)).result()
        cluster = Cluster(env, ports=replica_ports(replicas, replicas), log_dir=log_dir)
    else:
        ports = {name: servers.free_port() for name in ("orders", "payments", "inventory")}
        cluster = Cluster(env, ports=ports, log_dir=log_dir)
    stack.callback(cluster.stop)
    start_replicas(cluster, suffix=f"-{tag}")
    cluster.wait_ready(120)
    return cluster


async def place_orders(
    replicas: list[aiohttp.ClientSession], skus: list[str], concurrency: int, seconds: float
) -> tuple[list[float], list[dict[str, Any]], float]:
    """Run ``concurrency`` workers for ``seconds``, spread over the orders ``replicas``;
    latencies (s), final orders, elapsed."""
    rng = random.Random(1)
    latencies: list[float] = []
    final: list[dict[str, Any]] = []
    stop = time.monotonic() + seconds

    async def worker(orders: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            body = {
                "customer_id": f"c-{rng.randint(1, 1000)}",
                "items": [{"sku": s, "quantity": rng.randint(1, 3)} for s in rng.sample(skus, 2)],
                "payment_token": rng.choice(TOKENS),
            }
            began = time.perf_counter()
            order = await fetch(orders, "POST", "/orders", json=body, headers={"Prefer": "wait=5"})
            while order["status"] == "PENDING":
                await asyncio.sleep(0.05)
                order = await fetch(orders, "GET", f"/orders/{order['order_id']}")
            latencies.append(time.perf_counter() - began)
            final.append(order)

    began = time.perf_counter()
    await asyncio.gather(*(worker(replicas[n % len(replicas)]) for n in range(concurrency)))
    return latencies, final, time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``), 0.0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def started_pids(redis: Any, kafka: servers.Server) -> dict[str, list[int]]:
    """The Redis and Tansu processes this script started: their CPU is part of each order's
    cost too. A reused server is left out (on a shared machine it serves other jobs)."""
    nodes = getattr(redis, "nodes", None)
    processes = [n.process for n in nodes] if nodes is not None else [redis.process]
    found = {
        "redis": [p.pid for p in processes if p is not None],
        "kafka": [kafka.process.pid] if kafka.process is not None else [],
    }
    # servers ``python -m nativekit.testing.servers -- ...`` (``make bench``) started for
    # this script: children of its parent, reused through NATIVEKIT_TEST_*_URL
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != os.getppid() or int(entry.name) == os.getpid():
            continue
        if comm.startswith("redis-server") and not found["redis"]:
            found["redis"].append(int(entry.name))
        elif comm.startswith("tansu") and not found["kafka"]:
            found["kafka"].append(int(entry.name))
    return {name: pids for name, pids in found.items() if pids}


def cpu_snapshot(cluster: Cluster) -> dict[str, float]:
    """CPU seconds used so far by each service process, this load generator, and the local
    Redis and Kafka (Tansu) servers."""
    found: dict[str, float] = {}
    for name, process in cluster.processes.items():  # replicas summed per service
        service = service_of(name)
        found[service] = found.get(service, 0.0) + cpu_seconds(process.pid)
    found["client"] = cpu_seconds(os.getpid())
    for name, pids in SERVERS.items():
        found[name] = sum(cpu_seconds(pid) for pid in pids)
    return found


async def read_rate(inventory: aiohttp.ClientSession, sku: str, concurrency: int) -> float:
    """Cached product reads per second with the same client and concurrency."""
    count = 0
    stop = time.monotonic() + 5

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop:
            await fetch(inventory, "GET", f"/inventory/products/{sku}")
            count += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - began)


async def invariants(cluster: Cluster, skus: list[str], orders: list[dict[str, Any]]) -> bool:
    """Stock adds up and nothing is left reserved; payments match confirmed orders."""
    async with (
        session(cluster, "inventory", 50) as inventory,
        session(cluster, "payments", 50) as payments,
    ):
        deadline = time.monotonic() + 30
        while True:
            products = [await fetch(inventory, "GET", f"/inventory/products/{s}") for s in skus]
            if all(p["reserved"] == 0 for p in products) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        sold = {s: 0 for s in skus}
        for order in orders:
            if order["status"] == "CONFIRMED":
                for item in order["items"]:
                    sold[item["sku"]] += item["quantity"]
        stock_ok = all(
            p["available"] + p["reserved"] + p["sold"] == STOCK
            and p["reserved"] == 0
            and p["sold"] == sold[p["sku"]]
            for p in products
        )
        ids = [payment_id_for(f"{o['order_id']}:charge_payment:forward") for o in orders]
        found = await asyncio.gather(*(fetch(payments, "GET", f"/payments/{i}") for i in ids))
    payments_ok = True
    for order, payment in zip(orders, found, strict=True):
        status = payment["status"] if payment else None
        if order["status"] == "CONFIRMED":
            payments_ok &= status == "CAPTURED" and payment["amount"] == order["total"]
        else:
            payments_ok &= status in (None, "DECLINED", "REFUNDED", "VOIDED")
    return stock_ok and payments_ok


def keep_logs_on_failure(log_dir: Path) -> None:
    """Delete the services' logs after a clean run; after a failure, say where they are."""
    if sys.exc_info()[0] is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"service logs kept in {log_dir}", file=sys.stderr)


def start_profiles(cluster: Cluster, folder: Path, seconds: float) -> list[Any]:
    """py-spy samplers of every service process for ``seconds``, writing flame graphs."""
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    # BENCH_PROFILE_FORMAT=raw: collapsed stacks (``shop-<service>.txt``) to read as text
    raw = os.environ.get("BENCH_PROFILE_FORMAT") == "raw"
    options = ["--duration", str(round(seconds)), "--rate", "200", "--nonblocking"]
    options += ["--format", "raw"] if raw else []
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(process.pid),
                *options,
                "--output",
                str(folder / f"shop-{name}.{'txt' if raw else 'svg'}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in cluster.processes.items()
    ]


async def run(
    concurrency: int,
    seconds: float,
    redis_cluster: bool = False,
    replicas: int = 1,
    profile: Path | None = None,
    private_redis: bool = False,
) -> dict[str, Any]:
    """Start the shop, stock it, load it, check it."""
    tag = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        log_dir = Path(tempfile.mkdtemp(prefix=f"shop-load-{tag}-"))
        stack.callback(keep_logs_on_failure, log_dir)
        cluster = start_cluster(stack, tag, log_dir, redis_cluster, replicas, private_redis)
        async with (
            contextlib.AsyncExitStack() as sessions,
            session(cluster, "inventory", concurrency) as inventory,
        ):
            orders = [
                await sessions.enter_async_context(session(cluster, "orders", concurrency, n))
                for n in range(len(instances(cluster, "orders")))
            ]
            skus = [f"B-{n}" for n in range(SKUS)]
            for sku in skus:
                body = {"name": sku, "price": 1999, "available": STOCK}
                await fetch(inventory, "PUT", f"/inventory/products/{sku}", json=body)
            _, warm, _ = await place_orders(orders, skus, concurrency, 3)
            await asyncio.sleep(0.5)  # the warm-up's last events settle
            idle_start = cpu_snapshot(cluster)
            await asyncio.sleep(IDLE_SECONDS)  # background polling (fetches, relay, leases)
            idle = {k: (v - idle_start[k]) / IDLE_SECONDS for k, v in cpu_snapshot(cluster).items()}
            cpu_before, load = cpu_snapshot(cluster), os.getloadavg()[0]
            calls_before = commandstats()
            samplers = start_profiles(cluster, profile, seconds) if profile else []
            latencies, final, elapsed = await place_orders(orders, skus, concurrency, seconds)
            cpu_after = cpu_snapshot(cluster)
            calls_after = commandstats()
            for sampler in samplers:
                await asyncio.to_thread(sampler.wait)
            reads = await read_rate(inventory, skus[0], concurrency)
        ok = await invariants(cluster, skus, warm + final)
    latencies.sort()
    rate = len(final) / elapsed
    return {
        "benchmark": "shop_load",
        "concurrency": concurrency,
        "replicas": replicas,
        "redis_cluster": redis_cluster,
        "orders": len(final),
        "orders_per_s": round(rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "confirmed": sum(o["status"] == "CONFIRMED" for o in final),
        "cancelled": sum(o["status"] == "CANCELLED" for o in final),
        "cached_reads_per_s": round(reads, 1),
        "orders_vs_reads": round(rate / reads, 3),
        "invariants_held": ok,
        # CPU per order (ms) of each process during the timed phase: robust to a shared machine
        "cpu_ms_per_order": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(1, len(final)), 2)
            for name in cpu_after
        },
        # the same less what the process uses idle (its background polling) in that time:
        # does not grow when other jobs slow the run down and fewer orders share that cost
        "cpu_ms_per_order_above_idle": {
            name: round(
                (cpu_after[name] - cpu_before[name] - idle[name] * elapsed)
                * 1000
                / max(1, len(final)),
                2,
            )
            for name in cpu_after
        },
        "load_average_1m": round(load, 2),
        # Redis commands per order (a pipeline is one round trip for many commands), with
        # the background polling of the timed phase included; --redis-cluster only
        "redis_commands_per_order": {
            name: round((calls_after[name] - calls_before.get(name, 0)) / max(1, len(final)), 2)
            for name in sorted(calls_after)
            if calls_after[name] > calls_before.get(name, 0)
        },
    }


def main() -> None:
    """Parse arguments, run, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--quick", action="store_true", help="5 s of load")
    parser.add_argument(
        "--redis-cluster", action="store_true", help="on a private 3-master Redis Cluster"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="replicas of each service (default 1)"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="write py-spy flame graphs to this folder"
    )
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="start a Redis of this run's own (its CPU per order is then the shop's alone)",
    )
    args = parser.parse_args()
    seconds = 5 if args.quick else args.seconds
    result = asyncio.run(
        run(
            args.concurrency,
            seconds,
            args.redis_cluster,
            args.replicas,
            args.profile,
            args.private_redis,
        )
    )
    print(f"{'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'orders':>7} {'reads/s':>9} invariants")
    print(
        f"{result['orders_per_s']:>10} {result['p50_ms']:>8} {result['p99_ms']:>8} "
        f"{result['orders']:>7} {result['cached_reads_per_s']:>9} {result['invariants_held']}"
    )
    cpu = result["cpu_ms_per_order"]
    print("CPU ms/order: " + ", ".join(f"{name} {ms}" for name, ms in cpu.items()))
    above = result["cpu_ms_per_order_above_idle"]
    print("  above idle: " + ", ".join(f"{name} {ms}" for name, ms in above.items()))
    harness.headline(
        "shop_load",
        what="shop orders (3 services, saga with commands)"
        + (f", {result['replicas']} replicas each" if result["replicas"] > 1 else ""),
        unit="orders/s",
        figure=result["orders_per_s"],
        peer="cached product reads (same run)",
        peer_figure=result["cached_reads_per_s"],
        target=0.09,
        details={**result, "cpu_ms_per_order_total": round(sum(cpu.values()), 2)},
    )


if __name__ == "__main__":
    main()
