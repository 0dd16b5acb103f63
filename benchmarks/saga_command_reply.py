"""Command/reply sagas across services: throughput and latency over Kafka (Tansu) and Redis.

A 2-step saga whose steps are commands to two participants (inventory and
payments, each its own process, answering through ``@svc.command_handler``),
run at concurrency 50: every saga writes its commands through the
transactional outbox, the relay publishes them, the participants answer
idempotently (reply store in Redis), and the replies resume the saga. In the
same run, the same saga shape with *local* steps (no broker, no participants)
is the peer: the ratio shows what crossing services costs.

    python -m nativekit.testing.servers -- python benchmarks/saga_command_reply.py [--quick]
    # or with NATIVEKIT_TEST_KAFKA_URL / NATIVEKIT_TEST_REDIS_URL set;
    # BENCH_SAGAS (3000), BENCH_CONCURRENCY (50), BENCH_ROUNDS (3) adjust the run;
    # --quick: 200 sagas, one round. The run's keys and topics are deleted at the end.

Each round prints the CPU time per saga of the orchestrator and of each participant
process (``*_cpu_us_per_saga``; the participants' from /proc, on Linux). The last line
of output is one JSON object with every figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import harness
from pydantic import BaseModel

import nativekit
from nativekit import SagaContext
from nativekit.testing.servers import delete_topics

KAFKA = os.environ.get("NATIVEKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
REDIS = os.environ.get("NATIVEKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUICK = "--quick" in sys.argv[1:]  # a smoke run: 200 sagas, one round
SAGAS = 200 if QUICK else int(os.environ.get("BENCH_SAGAS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
ROUNDS = 1 if QUICK else int(os.environ.get("BENCH_ROUNDS", "3"))
ROOT = Path(__file__).resolve().parents[1]


class Order(BaseModel):
    order_id: str


class Reserve(BaseModel):
    order_id: str


class Reserved(BaseModel):
    reservation: str


class Release(BaseModel):
    order_id: str


class Charge(BaseModel):
    order_id: str


class Charged(BaseModel):
    charge: str


class Refund(BaseModel):
    order_id: str


class Done(BaseModel):
    ok: bool = True


def settings(run: str, **extra: Any) -> nativekit.Settings:
    fetch_wait = int(os.environ.get("BENCH_FETCH_WAIT_MS", "10")) / 1000
    values: dict[str, Any] = {
        "kafka": {"url": KAFKA, "idempotent_producer": False},
        "redis": {"url": REDIS},
        "saga": {"key_prefix": f"bench:cmd:{run}", "reply_topic": f"bench.{run}.replies"},
        "telemetry": {"log_level": "WARNING", "tracing_enabled": False, "metrics_enabled": True},
        "consumer": {"session_timeout_seconds": 6.0, "fetch_max_wait_seconds": fetch_wait},
    }
    for group, options in extra.items():
        values.setdefault(group, {}).update(options)
    return nativekit.Settings(**values)


def participant(role: str, run: str) -> nativekit.Service:
    svc = nativekit.Service(f"bench-{role}-{run}", settings=settings(run))
    if role == "inventory":

        @svc.command_handler(f"bench.{run}.inventory", concurrency=64)
        async def reserve(cmd: Reserve) -> Reserved:
            return Reserved(reservation=f"r-{cmd.order_id}")

        @svc.command_handler(f"bench.{run}.inventory", concurrency=64)
        async def release(cmd: Release) -> Done:
            return Done()

    else:

        @svc.command_handler(f"bench.{run}.payments", concurrency=64)
        async def charge(cmd: Charge) -> Charged:
            return Charged(charge=f"c-{cmd.order_id}")

        @svc.command_handler(f"bench.{run}.payments", concurrency=64)
        async def refund(cmd: Refund) -> Done:
            return Done()

    return svc


def orchestrator(run: str) -> nativekit.Service:
    svc = nativekit.Service(f"bench-orders-{run}", settings=settings(run))
    remote = svc.saga("remote", input=Order)

    @remote.command_step(topic=f"bench.{run}.inventory", reply=Reserved, reply_timeout=10)
    async def reserve(ctx: SagaContext[Order]) -> Reserve:
        return Reserve(order_id=ctx.data.order_id)

    @reserve.compensate_command(topic=f"bench.{run}.inventory", reply=Done)
    async def release(ctx: SagaContext[Order]) -> Release:
        return Release(order_id=ctx.data.order_id)

    @remote.command_step(topic=f"bench.{run}.payments", reply=Charged, reply_timeout=10)
    async def charge(ctx: SagaContext[Order]) -> Charge:
        return Charge(order_id=ctx.data.order_id)

    @charge.compensate_command(topic=f"bench.{run}.payments", reply=Done)
    async def refund(ctx: SagaContext[Order]) -> Refund:
        return Refund(order_id=ctx.data.order_id)

    local = svc.saga("local", input=Order)

    @local.step()
    async def reserve_local(ctx: SagaContext[Order]) -> Reserved:
        return Reserved(reservation=f"r-{ctx.data.order_id}")

    @reserve_local.compensate
    async def release_local(ctx: SagaContext[Order]) -> None:
        return None

    @local.step()
    async def charge_local(ctx: SagaContext[Order]) -> Charged:
        return Charged(charge=f"c-{ctx.data.order_id}")

    @charge_local.compensate
    async def refund_local(ctx: SagaContext[Order]) -> None:
        return None

    return svc


#: participant processes by role (their CPU per saga is read from /proc, Linux only)
PARTICIPANTS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (None where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(svc: nativekit.Service, saga: str, total: int, tag: str) -> dict[str, float]:
    latencies: list[float] = []
    next_index = 0
    statuses: dict[str, int] = {}
    errors: list[str] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            handle = await svc.sagas.start(saga, {"order_id": f"{tag}-{i}"})
            record = await handle.wait(60)
            latencies.append(time.perf_counter() - started)
            statuses[record.status.value] = statuses.get(record.status.value, 0) + 1
            if record.error:
                errors.append(json.dumps(record.to_dict(), default=str))

    others = {role: cpu_seconds(pid) for role, pid in PARTICIPANTS.items()}
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu) / total * 1e6
    latencies.sort()
    if statuses != {"COMPLETED": total}:
        raise RuntimeError(f"{saga}: not every saga completed: {statuses} {errors[:1]}")
    return {
        "sagas_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2),
        "orchestrator_cpu_us_per_saga": round(cpu_us),
        **{
            f"{role}_cpu_us_per_saga": round((after - before) / total * 1e6)
            for role, pid in PARTICIPANTS.items()
            if (before := others[role]) is not None and (after := cpu_seconds(pid)) is not None
        },
    }


async def create_topics(run: str) -> None:
    from nativekit.backends.kafka._broker import KafkaBroker

    broker = KafkaBroker(settings(run))
    await broker.create_topics(
        {f"bench.{run}.{t}": 4 for t in ("inventory", "payments", "replies")}
    )
    await broker.aclose()


async def ready(svc: nativekit.Service) -> None:
    consumers = list(svc.messaging.consumers)
    commands = svc._saga_commands
    if commands is not None and commands.consumer is not None:
        consumers.append(commands.consumer)
    # polling: a consumer reports its assignment only through its group member
    while not all(c._gc is not None and c._gc.assignment() for c in consumers):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def serve_participant(role: str, run: str) -> None:
    svc = participant(role, run)
    await svc.startup(hook_sigterm=False)
    nativekit.tune_gc()  # as a service process under load opts in (docs/performance.md)
    await ready(svc)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await svc.shutdown()
    nativekit.restore_gc()


async def cleanup(run: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    for pattern in (f"*bench:cmd:{run}*", f"nk:cmd:bench-*-{run}:*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    await client.aclose()


async def main() -> None:
    """Measure, then delete the run's Redis keys and topics whatever happened."""
    run = uuid.uuid4().hex[:8]
    try:
        await measure(run)
    finally:
        await cleanup(run)
        await delete_topics(KAFKA, [f"bench.{run}."])


async def measure(run: str) -> None:
    await create_topics(run)
    root = str(ROOT)
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, __file__, "--participant", role, run],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": root},
        )
        for role in ("inventory", "payments")
    ]
    PARTICIPANTS.update(
        {role: proc.pid for role, proc in zip(("inventory", "payments"), procs, strict=True)}
    )
    svc = orchestrator(run)
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if line.strip() != b"ready":
                raise RuntimeError(f"participant did not start: {line!r}")
        await svc.startup(hook_sigterm=False)
        nativekit.tune_gc()
        await ready(svc)
        await drive(svc, "remote", 200, "warm-r")
        await drive(svc, "local", 200, "warm-l")
        results: dict[str, list[dict[str, float]]] = {"remote": [], "local": []}
        for n in range(ROUNDS):
            order = ("remote", "local") if n % 2 == 0 else ("local", "remote")
            for saga in order:
                results[saga].append(await drive(svc, saga, SAGAS, f"{saga}-{n}"))
                print(f"round {n + 1} {saga}: {results[saga][-1]}", flush=True)
    finally:
        await svc.shutdown()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def median(saga: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[saga]), 2)

    summary = {
        saga: {k: median(saga, k) for k in ("sagas_per_s", "p50_ms", "p99_ms")}
        for saga in ("remote", "local")
    }
    remote, local = summary["remote"], summary["local"]
    print()
    print(f"{'saga':<28}{'sagas/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs local':>10}")
    for label, row in (("2 command steps (Kafka)", remote), ("2 local steps", local)):
        ratio = row["sagas_per_s"] / local["sagas_per_s"]
        print(
            f"{label:<28}{row['sagas_per_s']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{ratio:>9.2f}x"
        )
    summary["command_vs_local_throughput"] = round(remote["sagas_per_s"] / local["sagas_per_s"], 3)
    summary["targets_met"] = remote["sagas_per_s"] >= 300 and remote["p99_ms"] < 250
    summary["config"] = {"sagas": SAGAS, "concurrency": CONCURRENCY, "rounds": ROUNDS}
    harness.headline(
        "saga_command_reply",
        what="saga of 2 command steps over Kafka",
        unit="sagas/s",
        figure=remote["sagas_per_s"],
        peer="the same saga with 2 local steps",
        peer_figure=local["sagas_per_s"],
        target=0.5,
        rows=[
            harness.row(
                "p99 latency, 2 command steps",
                unit="ms",
                figure=remote["p99_ms"],
                peer="local steps' p99",
                peer_figure=local["p99_ms"] * 2,  # the target: at most twice the local p99
                target=1.0,
                higher_is_better=False,
            )
        ],
        details=summary,
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--participant":
        asyncio.run(serve_participant(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(main())
