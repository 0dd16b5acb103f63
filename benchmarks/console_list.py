"""The console's saga list with 10,000 sagas stored, against the operator JSON API.

10,000 instances of a one-step saga are parked FAILED (plus 1,000 COMPLETED) on
Redis (or on PostgreSQL with ``--postgres URL``), then the first page (50) of each
is fetched, alternating, in process over ASGI (no sockets):

- ``console``: ``GET /_nativekit/console/sagas?status=FAILED``: the HTML page, with
  the counts per status for the header and the page of sagas from the index;
- ``operator API``: ``GET /_nativekit/sagas?status=FAILED&limit=50``: the same page
  as JSON (the peer: what the page adds is the counts and the rendering).

The figure is the server time per page (the ``http_request_duration_seconds`` the
service records), median and p95 over the requests; the target is a first page under
200 ms with 10,000 sagas stored.

    python benchmarks/console_list.py [--redis redis://127.0.0.1:6379/0]
        [--postgres postgresql://127.0.0.1:5432/postgres] [--quick]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

import httpx
import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
import nativekit.saga
from nativekit.saga import SagaContext
from nativekit.testing import lifespan

TOKEN = "console-bench-token-0123456789abcdef"


class Order(BaseModel):
    order_id: str


def reference_loop() -> float:
    """Seconds of a 10-million-step Python loop: the machine's reference figure."""
    start = time.perf_counter()
    n = 0
    for i in range(10_000_000):
        n += i
    return time.perf_counter() - start


BROKEN = {"on": True}


def declare(svc: nativekit.Service) -> nativekit.saga.Saga[Order]:
    """A saga that parks FAILED (after its pivot) while ``BROKEN['on']``."""
    saga = svc.saga("ship", input=Order)

    @saga.step()
    async def pay(ctx: SagaContext[Order]) -> None:  # no compensation: a pivot
        return None

    @saga.step(retries=0)
    async def dispatch(ctx: SagaContext[Order]) -> None:
        if BROKEN["on"]:
            raise ConnectionError("carrier down")

    return saga


async def fill(
    svc: nativekit.Service, saga: nativekit.saga.Saga[Order], failed: int, completed: int
) -> None:
    """Park ``failed`` sagas FAILED and complete ``completed`` more, 200 at a time."""

    async def run(n: int) -> None:
        handle = await svc.sagas.start(saga, Order(order_id=str(n)))
        await handle.wait(60)

    for first in range(0, failed, 200):
        await asyncio.gather(*(run(n) for n in range(first, min(failed, first + 200))))
    BROKEN["on"] = False
    for first in range(failed, failed + completed, 200):
        await asyncio.gather(*(run(n) for n in range(first, min(failed + completed, first + 200))))


async def timed(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> float:
    start = time.perf_counter()
    answer = await client.get(url, params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    took = time.perf_counter() - start
    assert answer.status_code == 200, answer.text[:300]
    return took


async def main(redis_url: str, postgres: str | None, quick: bool) -> dict[str, object]:
    failed, completed, requests = (1_000, 100, 20) if quick else (10_000, 1_000, 60)
    prefix = f"bench:console:{uuid.uuid4().hex[:8]}"
    schema = f"bench_console_{uuid.uuid4().hex[:8]}"
    database = (
        {"url": postgres, "schema_name": schema, "migrate_on_start": True} if postgres else {}
    )
    settings = nativekit.Settings(
        _env_file=None,
        redis={"url": redis_url},
        database=database,
        saga={"key_prefix": prefix, "operator_api": True},
        console={"enabled": True},
        auth={"token": TOKEN},
        telemetry={"log_level": "WARNING"},
    )
    svc = nativekit.Service("orders", settings=settings)
    saga = declare(svc)
    app = svc.app
    try:
        async with lifespan(app):
            filled = time.perf_counter()
            await fill(svc, saga, failed, completed)
            filled = time.perf_counter() - filled
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                contenders = {
                    "console": ("/_nativekit/console/sagas", {"status": "FAILED"}),
                    "operator API": ("/_nativekit/sagas", {"status": "FAILED", "limit": "50"}),
                }
                times: dict[str, list[float]] = {name: [] for name in contenders}
                for _ in range(requests):
                    for name, (url, params) in contenders.items():
                        times[name].append(await timed(client, url, params))
    finally:
        cleanup = aioredis.Redis.from_url(redis_url)
        async for key in cleanup.scan_iter(f"{prefix}*", count=1000):
            await cleanup.delete(key)
        await cleanup.aclose()
        if postgres:
            import asyncpg

            connection = await asyncpg.connect(postgres)
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await connection.close()

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
        }

    figures = {name: summary(values) for name, values in times.items()}
    print(f"{failed} FAILED + {completed} COMPLETED sagas stored in {filled:.1f} s")
    print(f"{'contender':<14} {'median ms':>10} {'p95 ms':>8}")
    for name, figure in figures.items():
        print(f"{name:<14} {figure['median_ms']:>10} {figure['p95_ms']:>8}")
    ratio = figures["console"]["median_ms"] / figures["operator API"]["median_ms"]
    return {
        "benchmark": "console_list",
        "store": "postgresql" if postgres else "redis",
        "reference_loop_s": round(reference_loop(), 3),
        "stored": failed + completed,
        "console": figures["console"],
        "operator_api": figures["operator API"],
        "console_vs_operator_api_time": round(ratio, 2),
        "target_first_page_ms": 200,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", default=os.environ.get("NATIVEKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--postgres", default=None, help="store the sagas in PostgreSQL")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.redis, args.postgres, args.quick))))
