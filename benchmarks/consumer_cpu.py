"""CPU cost per message of the idempotent consumer, on each topic kind (issue 21).

Throughput on a shared 2-core machine moves with everything else that runs there;
the work a message costs does not. This measures, in this process against a real
Kafka-protocol broker and Redis, for the four topic kinds of consumer_throughput.py
(``aiokafka``, ``plain``, ``publish``, ``relay``; produced by its helpers):

* **calls per message**: Python function calls (cProfile entries of Python code)
  and all calls (builtins included), from the group's assignment of the partitions
  to the last message marked DONE, divided by the messages: everything the process
  ran in the window (aiokafka's fetcher, redis-py, the event loop, the consumer,
  pydantic);
* **CPU seconds per 10,000 messages**: ``time.process_time()`` over the same window
  in runs without the profiler (median of BENCH_ROUNDS, default 3).

Contenders: ``nativekit`` (``@svc.consumer``, Redis dedup, ``tune_gc()`` as
consumer_throughput.py runs it; the handler counts, its one call per message is
in the figures) and ``faststream`` (a subscriber with the same model, window from
its first handler call to the last: its first fetch is left out, to its advantage).
The ratio FastStream CPU / nativekit CPU is what issue 21's 5x throughput target
needs once the broker stops being the limit.

Usage: python -m nativekit.testing.servers -- python benchmarks/consumer_cpu.py
  [--kinds plain,relay] [--no-faststream] [--profile-dir DIR] [--top 25] [--quick]

``--profile-dir`` writes each kind's pstats file; ``--top`` prints the functions with
most own time. BENCH_MESSAGES (default 20,000) per topic kind. To read the same
topics from several runs (benchmarks/ab_consumer_cpu.sh): BENCH_RUN=<id> names them,
BENCH_PRODUCE=0 reads them as they are, BENCH_KEEP=1 leaves them for the next run.
Last line: one JSON object (harness.headline).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import consumer_throughput as ct
import harness

import nativekit
from nativekit.testing.servers import delete_topics

QUICK = "--quick" in sys.argv[1:]
N = 2000 if QUICK else int(os.environ.get("BENCH_MESSAGES", "20000"))
ROUNDS = 1 if QUICK else int(os.environ.get("BENCH_ROUNDS", "3"))
PRODUCE = os.environ.get("BENCH_PRODUCE", "1") == "1"
KEEP = os.environ.get("BENCH_KEEP") == "1"
PROCESS = uuid.uuid4().hex[:4]  # runs reading reused topics need groups of their own
ct.N = N
if os.environ.get("BENCH_RUN"):  # the topics' names (of an earlier run, to reuse them)
    ct.RUN = os.environ["BENCH_RUN"]
    ct.TOPICS.update({kind: f"bench-{kind}-{ct.RUN}" for kind in ct.KINDS})


class Window:
    """CPU time and (optionally) profiled calls from :meth:`start` to :meth:`stop`."""

    def __init__(self, profile: bool) -> None:
        self.profiler = cProfile.Profile() if profile else None
        self.started = False
        self.cpu = 0.0
        self.wall = 0.0
        self.last = asyncio.Event()

    def start(self) -> None:
        self.started = True
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        if self.profiler is not None:
            self.profiler.enable()

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.disable()
        self.cpu = time.process_time() - self.cpu
        self.wall = time.perf_counter() - self.wall


async def run_nativekit(window: Window) -> None:
    """``@svc.consumer`` with Redis dedup: the window opens when the group assigned the
    partitions and closes when the N-th message is DONE."""
    svc = nativekit.Service("bench-cpu", settings=ct.settings())
    handled = 0

    @svc.consumer(ct.TOPIC[0], group=ct.group(f"nkcpu{PROCESS}"))
    async def handle(event: ct.OrderPlaced) -> None:
        nonlocal handled
        handled += 1
        if handled == N:
            window.last.set()

    consumer = svc.messaging.consumers[0]
    await svc.startup(hook_sigterm=False)
    nativekit.tune_gc()
    try:
        # from the group's assignment: the first fetch and claims are in the window
        while consumer.joining() is not None:  # noqa: ASYNC110 - polled, no event for it
            await asyncio.sleep(0.001)
        window.start()
        await asyncio.wait_for(window.last.wait(), 600)
        while consumer.status().in_flight:  # noqa: ASYNC110 - the last DONE marks (no event)
            await asyncio.sleep(0.001)
        window.stop()
    finally:
        await svc.shutdown()
        nativekit.restore_gc()
    assert handled == N, handled


async def run_faststream(window: Window) -> None:
    """A FastStream subscriber: the window closes at its N-th handler call."""
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(ct.SERVERS, logger=None)
    handled = 0

    @broker.subscriber(
        ct.TOPIC[0], group_id=ct.group(f"fscpu{PROCESS}"), auto_offset_reset="earliest"
    )
    async def handle(event: ct.OrderPlaced) -> None:
        nonlocal handled
        if not handled:
            window.start()
        handled += 1
        if handled == N:
            window.stop()
            window.last.set()

    await broker.start()
    try:
        await asyncio.wait_for(window.last.wait(), 600)
    finally:
        await broker.stop()


def python_calls(stats: pstats.Stats) -> int:
    """Calls of Python functions (builtins are filed under ``~``)."""
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return sum(nc for (filename, _, _), (_, nc, _, _, _) in entries.items() if filename != "~")


async def measure(kind: str, name: str, args: argparse.Namespace) -> dict[str, float]:
    ct.TOPIC[0] = ct.TOPICS[kind]
    bench = run_nativekit if name == "nativekit" else run_faststream
    cpus = []
    for round_no in range(ROUNDS):
        ct.ROUND[0] += 1
        window = Window(profile=False)
        await bench(window)
        cpus.append(window.cpu / N * 10_000)
        print(
            f"  {kind:>9} {name:>10} round {round_no + 1}: {cpus[-1]:.3f} CPU s/10k msgs, "
            f"{N / window.wall:,.0f} msg/s (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    ct.ROUND[0] += 1
    window = Window(profile=True)
    await bench(window)
    assert window.profiler is not None
    stats = pstats.Stats(window.profiler)
    if args.profile_dir:
        stats.dump_stats(str(args.profile_dir / f"{name}-{kind}.pstats"))
    if args.top and name == "nativekit":
        stats.sort_stats("tottime").print_stats(args.top)
    result = {
        "python_calls_per_msg": round(python_calls(stats) / N, 2),
        "all_calls_per_msg": round(stats.total_calls / N, 2),  # type: ignore[attr-defined]
        "cpu_s_per_10k": round(statistics.median(cpus), 4),
    }
    print(f"{kind:>9} {name:>10}: {result}", flush=True)
    return result


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    kinds = args.kinds.split(",") if args.kinds else list(ct.KINDS)
    if not PRODUCE:
        print(f"reading the topics of run {ct.RUN}", flush=True)
    else:
        print(f"producing {N} messages per topic kind (run {ct.RUN})", flush=True)
        await ct.produce()
    names = ["nativekit"] + ([] if args.no_faststream else ["faststream"])
    results = {(kind, name): await measure(kind, name, args) for kind in kinds for name in names}
    nk = {kind: results[kind, "nativekit"] for kind in kinds}
    print()
    head = ("kind", "contender", "py calls/msg", "all calls/msg", "CPU s/10k")
    print("{:<9} {:<11} {:>12} {:>13} {:>10}".format(*head))
    for (kind, name), r in results.items():
        print(
            f"{kind:<9} {name:<11} {r['python_calls_per_msg']:>12.2f} "
            f"{r['all_calls_per_msg']:>13.2f} {r['cpu_s_per_10k']:>10.3f}"
        )
    details: dict[str, Any] = {
        "messages": N,
        "rounds": ROUNDS,
        "python_calls_per_msg": {k: r["python_calls_per_msg"] for k, r in nk.items()},
        "all_calls_per_msg": {k: r["all_calls_per_msg"] for k, r in nk.items()},
        "cpu_s_per_10k": {f"{k}/{n}": r["cpu_s_per_10k"] for (k, n), r in results.items()},
        "calls_per_msg": {f"{k}/{n}": r["python_calls_per_msg"] for (k, n), r in results.items()},
    }
    if args.no_faststream:
        worst = max(kinds, key=lambda k: nk[k]["cpu_s_per_10k"])
        harness.headline(
            "consumer_cpu",
            what=f"idempotent consumer CPU s per 10k messages, topic written by {worst} (the most)",
            unit="CPU s/10k msgs",
            figure=nk[worst]["cpu_s_per_10k"],
            peer="itself",
            peer_figure=nk[worst]["cpu_s_per_10k"],
            higher_is_better=False,
            details=details,
        )
        return
    fs = {kind: results[kind, "faststream"] for kind in kinds}
    ratio = {k: fs[k]["cpu_s_per_10k"] / nk[k]["cpu_s_per_10k"] for k in kinds}
    worst = min(kinds, key=ratio.__getitem__)
    rows = [
        harness.row(
            f"idempotent consumer CPU per message, topic written by {kind}",
            unit="CPU s/10k msgs",
            figure=nk[kind]["cpu_s_per_10k"],
            peer="FastStream",
            peer_figure=fs[kind]["cpu_s_per_10k"],
            target=5.0,
            higher_is_better=False,
        )
        for kind in kinds
        if kind != worst
    ]
    harness.headline(
        "consumer_cpu",
        what=f"idempotent consumer CPU per message, topic written by {worst} (the lowest ratio)",
        unit="CPU s/10k msgs",
        figure=nk[worst]["cpu_s_per_10k"],
        peer="FastStream",
        peer_figure=fs[worst]["cpu_s_per_10k"],
        target=5.0,
        higher_is_better=False,
        rows=rows,
        details=details,
    )


async def run(args: argparse.Namespace) -> None:
    """Measure, then delete the run's Redis keys and (unless kept) its topics."""
    try:
        await main(args)
    finally:
        await ct.cleanup()
        if KEEP:
            print(f"kept the topics of run {ct.RUN}", flush=True)
        else:
            await delete_topics(ct.KAFKA, list(ct.TOPICS.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", help="comma-separated topic kinds (default: all four)")
    parser.add_argument("--no-faststream", action="store_true", help="nativekit only")
    parser.add_argument("--profile-dir", type=Path, help="write a pstats file per kind here")
    parser.add_argument("--quick", action="store_true", help="2,000 messages, one round")
    parser.add_argument("--top", type=int, default=0, help="print the N costliest functions")
    parsed = parser.parse_args()
    if parsed.profile_dir:
        parsed.profile_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(parsed))
