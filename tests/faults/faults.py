"""The faults: each runs while the load places orders and returns once the fault is over
(a restarted service is ready again, a proxy forwards again)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tests.faults.conftest import LONG
from tests.faults.infra import Trouble
from tests.faults.shop import SERVICES, FaultShop

#: Seconds a blackhole lasts, and the broker stays away (3 s in the quick version).
OUTAGE = 10.0 if LONG else 3.0
#: Seconds of added latency before the connections are dropped.
SLOW = 3.0 if LONG else 1.0


@dataclass
class Restart:
    """How a restarted service came back: seconds from its start to /livez and /readyz,
    and the CPU time the process had used when /livez first answered."""

    service: str
    live_after: float
    live_cpu: float
    ready_after: float
    #: While live and not ready: (seconds from start, the failing readiness checks) each
    #: time the set changed, so a restart over its bound shows what it waited for.
    waited_on: list[tuple[float, list[str]]] = field(default_factory=list)


@dataclass
class FaultRun:
    """What a fault did, for the checks and the table."""

    restarts: list[Restart] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process used so far."""
    import os
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(shop: FaultShop, service: str, timeout: float = 120) -> Restart:  # noqa: ASYNC109
    """Poll a service just started until /livez, then /readyz, pass; once live it must
    stay live while it is not ready (a consumer joining a group the broker holds up)."""
    started = shop.started_at[service]
    process = shop.cluster.processes[service]
    live_after = live_cpu = None
    waited_on: list[tuple[float, list[str]]] = []
    async with httpx.AsyncClient(base_url=shop.url(service), timeout=2) as client:
        while True:
            assert process.poll() is None, f"{service} exited: {shop.log(service)[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                if live_after is None and (await client.get("/livez")).status_code == 200:
                    live_after = time.monotonic() - started
                    live_cpu = cpu_seconds(process.pid)
                if live_after is not None:
                    reply = await client.get("/readyz")
                    if reply.status_code == 200:
                        ready_after = time.monotonic() - started
                        assert live_cpu is not None
                        return Restart(service, live_after, live_cpu, ready_after, waited_on)
                    failing = failing_checks(reply)
                    if not waited_on or waited_on[-1][1] != failing:
                        waited_on.append((round(time.monotonic() - started, 2), failing))
                    assert (await client.get("/livez")).status_code == 200, "live, then not"
            if time.monotonic() - started > timeout:
                reply = await client.get("/readyz")
                raise AssertionError(f"{service} not ready after {timeout}s: {reply.text}")
            await asyncio.sleep(0.02)


def failing_checks(reply: httpx.Response) -> list[str]:
    """The names of the checks a /readyz answer (health+json) reports failing."""
    try:
        checks = reply.json().get("checks", {})
    except ValueError:
        return [f"HTTP {reply.status_code}"]
    return sorted(
        name for name, results in checks.items() if any(r.get("status") == "fail" for r in results)
    )


async def all_ready(shop: FaultShop, timeout: float = 120) -> None:  # noqa: ASYNC109
    """Until every service answers /readyz with 200."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        for service in SERVICES:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(shop.url(service) + "/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    reply = await client.get(shop.url(service) + "/readyz")
                    raise AssertionError(f"{service} not ready: {reply.text}")
                await asyncio.sleep(0.1)


def kill(service: str) -> Callable[[FaultShop, FaultRun], Awaitable[None]]:
    async def fault(shop: FaultShop, run: FaultRun) -> None:
        shop.kill(service)
        await asyncio.sleep(1.0)
        shop.start(service)
        run.restarts.append(await wait_ready(shop, service))

    return fault


def rolling(service: str) -> Callable[[FaultShop, FaultRun], Awaitable[None]]:
    async def fault(shop: FaultShop, run: FaultRun) -> None:
        run.exit_codes[service] = await asyncio.to_thread(shop.terminate, service)
        shop.start(service)
        run.restarts.append(await wait_ready(shop, service))

    return fault


async def redis_restart(shop: FaultShop, run: FaultRun) -> None:
    await asyncio.to_thread(shop.redis.stop)
    await asyncio.sleep(2.0)
    shop.redis.start()  # from the main thread (see DIE_WITH_PARENT)
    await all_ready(shop)


async def broker_outage(shop: FaultShop, run: FaultRun) -> None:
    shop.kafka_proxy.set("*", Trouble(refuse=True))
    await asyncio.sleep(OUTAGE)
    shop.kafka_proxy.heal()
    await all_ready(shop)


def network(target: str, service: str) -> Callable[[FaultShop, FaultRun], Awaitable[None]]:
    async def fault(shop: FaultShop, run: FaultRun) -> None:
        proxy = shop.redis_proxy if target == "redis" else shop.kafka_proxy
        proxy.set(service, Trouble(latency=0.2))
        await asyncio.sleep(SLOW)
        proxy.set(service, Trouble())
        proxy.drop(service)
        await asyncio.sleep(1.0)
        proxy.set(service, Trouble(blackhole=True))
        await asyncio.sleep(OUTAGE)
        proxy.heal()
        await all_ready(shop)

    return fault


FAULTS: dict[str, Callable[[FaultShop, FaultRun], Awaitable[None]]] = {
    **{f"kill-{s}": kill(s) for s in SERVICES},
    **{f"rolling-{s}": rolling(s) for s in SERVICES},
    "redis-restart": redis_restart,
    "broker-outage": broker_outage,
    **{f"net-redis-{s}": network("redis", s) for s in SERVICES},
    **{f"net-kafka-{s}": network("kafka", s) for s in SERVICES},
}
